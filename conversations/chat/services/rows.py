"""What the web's writes and the worker's share: row locks in their one order, and what a
send reads of the user, the conversation and its messages, each in one statement.

One lock order in every transaction that takes these rows: the user's, the conversation's,
the completion's, then the budget period's; all NO KEY locks, so the foreign-key checks of
rows inserted meanwhile (KEY SHARE) never wait on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.http import Http404

from conversations.billing import budgets
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.tree import Tree

BUDGET_FIELDS = ("budget__monthly_token_limit", "budget__monthly_cost_limit", "budget__unlimited")


def lock_conversation(conversation: Conversation) -> Conversation:
    # Serialises writes in one conversation (positions, one reply at a time).
    return Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)


def lock_sender(user_id: int) -> budgets.Limits:
    """Lock the user's row until the transaction ends, so one user's sends (and the counts
    they check) go one by one; and read the budget limits that apply, in the same
    statement (a second one reads the pooled limits of their groups, when one has any)."""
    user = (
        get_user_model()
        .objects.select_for_update(no_key=True, of=("self",))
        .select_related("budget")
        .annotate(in_budgeted_group=budgets.in_budgeted_group())
        .only("pk", *BUDGET_FIELDS)
        .get(pk=user_id)
    )
    groups = budgets.group_limits(user_id) if user.in_budgeted_group else ()
    return budgets.limits_of(budgets.override_of(user), groups=groups)


@dataclass(frozen=True)
class Active:
    """The user's completions queued or being written: in this conversation, and in all."""

    here: int
    everywhere: int


def _count(rows: QuerySet[Completion], by: str) -> Coalesce:
    counted = rows.values(by).annotate(count=Count("pk")).values("count")
    return Coalesce(Subquery(counted), 0)


def lock_own_conversation(user_id: int, conversation_id: int) -> tuple[Conversation, Active]:
    """The user's conversation, locked until the transaction ends (404 for anyone else's),
    and the user's active completions, in one statement. Only after `lock_sender`: a
    statement's counts are of the moment it began, before any wait for the conversation's
    lock, and they hold because every completion of the user is made under the user's
    lock, which this transaction already has."""
    active = Completion.objects.filter(user_id=user_id, status__in=Completion.ACTIVE)
    try:
        conversation = (
            Conversation.objects.select_for_update(no_key=True)
            .annotate(
                active_here=_count(active.filter(conversation_id=OuterRef("pk")), "conversation"),
                active_everywhere=_count(active, "user"),
            )
            .get(pk=conversation_id, owner_id=user_id)
        )
    except Conversation.DoesNotExist:
        raise Http404("No such conversation") from None
    return conversation, Active(conversation.active_here, conversation.active_everywhere)


class Row(NamedTuple):
    """What a call's history and the tree need of a message (one row of one query)."""

    pk: int
    parent_id: int | None
    role: str
    content: str
    position: int
    status: str
    completion_id: int | None
    choice_index: int | None
    is_selected: bool


SENT = (Message.Status.COMPLETE, Message.Status.STOPPED)


def tree(conversation: Conversation) -> Tree:
    """The conversation's messages as a tree (one query)."""
    return Tree(
        Row(*values) for values in conversation.messages.order_by("pk").values_list(*Row._fields)
    )


def history(conversation: Conversation, line: list) -> list[dict[str, str]]:
    """The messages sent with a call: the system prompt first, then the messages of
    `line` (root first; the chosen choice of each reply) but any reply that broke off.
    Each is its content alone: a reply's reasoning is shown, never sent back (nor is a
    streaming row's tagged text: only ended replies go)."""
    sent = [{"role": "system", "content": conversation.system_prompt}]
    if not conversation.system_prompt:
        sent = []
    sent.extend(
        {"role": node.role, "content": node.content}
        for node in line
        if node.status in SENT and node.role in (Message.Role.USER, Message.Role.ASSISTANT)
    )
    return sent


def path(tree: Tree) -> list:
    """The messages of the path the person is on, root first."""
    return [step.chosen for step in tree.steps()]


def select(conversation: Conversation, tree: Tree, node) -> None:
    """Put `node` and the messages it follows on the person's path: each is made the
    selected one of its siblings (one statement per level that changes, none usually)."""
    for each in tree.lineage(node.pk):
        if not each.is_selected:
            select_among_siblings(conversation, each.pk, each.parent_id)


def select_among_siblings(conversation: Conversation, pk: int, parent_id: int | None) -> None:
    Message.objects.filter(conversation_id=conversation.pk, parent_id=parent_id).update(
        is_selected=Case(When(pk=pk, then=True), default=False)
    )
