"""A conversation as a tree of messages: each message has a parent (none for a first
turn); the siblings under one parent are its versions (a sent message and its edits, a
reply and its regenerations; a reply's n choices are one version); the one selected among
siblings continues the conversation. The path the person is on runs from the root through
the selected child of each message, down to a leaf.

Plain functions over rows already read (one query, whatever the number of branches): the
chat page, the send's history and staff review build on them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Node(Protocol):
    """What the tree needs of a message (a Message, or a row of its columns)."""

    pk: int
    parent_id: int | None
    role: str
    completion_id: int | None
    choice_index: int | None
    is_selected: bool


@dataclass(frozen=True)
class Versions:
    """Which version of its turn a message is (from 1), of how many."""

    number: int
    count: int

    @property
    def several(self) -> bool:
        return self.count > 1

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count


ONE = Versions(1, 1)


@dataclass
class Step:
    """One turn of the path: the version shown (a message, or a reply's choices), the
    message in it that the path goes on from, and which version it is."""

    version: list
    chosen: object
    versions: Versions


def version_key(node: Node) -> tuple:
    # A reply's choices came from one call and are one version; anything else is its own.
    if node.completion_id is not None and node.role == "assistant":
        return ("c", node.completion_id)
    return ("m", node.pk)


class Tree:
    """The messages of one conversation, arranged by parent. `rows`: every message of the
    conversation, in the order they were made (by id)."""

    def __init__(self, rows: Iterable[Node]):
        self.nodes: dict[int, Node] = {}
        groups: dict[int | None, dict[tuple, list]] = defaultdict(dict)
        for node in rows:
            self.nodes[node.pk] = node
            groups[node.parent_id].setdefault(version_key(node), []).append(node)
        # Versions in the order they were made (their first row's id), choices by index.
        self._versions: dict[int | None, list[list]] = {
            parent: [
                sorted(version, key=lambda n: (n.choice_index or 0, n.pk))
                for version in by_key.values()
            ]
            for parent, by_key in groups.items()
        }

    def __len__(self) -> int:
        return len(self.nodes)

    def versions(self, parent_id: int | None) -> list[list]:
        """The versions under `parent_id` (None: the first turn's), oldest first."""
        return self._versions.get(parent_id, [])

    def version_of(self, node: Node) -> tuple[int, list[list]]:
        """The index of the version holding `node` among its siblings', and those versions."""
        versions = self.versions(node.parent_id)
        key = version_key(node)
        for index, version in enumerate(versions):
            if version_key(version[0]) == key:
                return index, versions
        raise KeyError(node.pk)

    def steps(self) -> Iterator[Step]:
        """The path the person is on, turn by turn from the first: at each level the
        version holding the selected child; it ends where no child is selected (a leaf,
        or a message whose new reply is still to come)."""
        parent = None
        while True:
            versions = self.versions(parent)
            found = None
            for number, version in enumerate(versions, start=1):
                chosen = next((n for n in version if n.is_selected), None)
                if chosen is not None:
                    found = Step(version, chosen, Versions(number, len(versions)))
                    break
            if found is None:
                return
            yield found
            parent = found.chosen.pk

    def leaf(self) -> Node | None:
        """The last message of the path (where the next message goes), or None."""
        last = None
        for step in self.steps():
            last = step.chosen
        return last

    def lineage(self, pk: int) -> list[Node]:
        """The messages from the root down to message `pk`, itself included."""
        line = []
        node = self.nodes.get(pk)
        while node is not None:
            line.append(node)
            node = self.nodes.get(node.parent_id) if node.parent_id is not None else None
        line.reverse()
        return line

    def representative(self, version: list) -> Node:
        """The message a switch to `version` lands on: for a reply's choices, the one
        the conversation went on from (else the first)."""
        for node in version:
            if self.versions(node.pk):
                return node
        return version[0]

    def walk(self) -> Iterator[tuple[list, int, Versions]]:
        """Every version, depth first (each followed by what came after it), with its
        depth and its number among its siblings: staff review's whole tree."""
        pending: list[tuple[list, int, Versions]] = []

        def push(parent: int | None, depth: int) -> None:
            versions = self.versions(parent)
            pending.extend(
                reversed(
                    [
                        (version, depth, Versions(number, len(versions)))
                        for number, version in enumerate(versions, start=1)
                    ]
                )
            )

        push(None, 0)
        while pending:
            version, depth, versions = pending.pop()
            yield version, depth, versions
            for node in reversed(version):
                push(node.pk, depth + 1)
