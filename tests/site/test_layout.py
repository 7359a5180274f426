"""The layout's rules, read from the code's own imports (every import statement, those inside
functions too): no import circle, and dependencies that point one way between domains.

    shared, upstream      import nothing of ours
    providers             may import shared and upstream
    accounts, billing     may import shared and upstream (not each other, not chat)
    chat                  may import the above (not usage, not review)
    usage, review, api,   may import any domain above (not each other)
    search, portability,
    sharing
    privacy               may import any of the above (retention, taking one's data, leaving)
    chatsite/             imports no domain package (it names them in URLs and settings)

and no module imports a views module but a urls module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("conversations", "chatsite")
# What each domain package may import of ours, besides itself.
ALLOWED = {
    "shared": set(),
    "upstream": set(),
    # The servers called and their models.
    "providers": {"shared", "upstream"},
    "accounts": {"shared", "upstream"},
    "billing": {"shared", "upstream"},
    "chat": {"shared", "upstream", "providers", "accounts", "billing"},
    "usage": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    "review": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    "api": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    # A person's own chats: search, export and import, share links.
    "search": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    "portability": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    "sharing": {"shared", "upstream", "providers", "accounts", "billing", "chat"},
    # Retention and leaving: removes a person's chats, usage kept; their data as one ZIP.
    "privacy": {
        "shared",
        "upstream",
        "providers",
        "accounts",
        "billing",
        "chat",
        "usage",
        "review",
        "api",
        "portability",
        "sharing",
    },
}
# Views modules: Django calls them through URLs (events.py holds the chat's SSE view).
VIEWS = {"views", "events"}
# Folders Django looks for in the app itself: glue that may use any domain.
APP_FOLDERS = {"management", "templatetags"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module of ours it imports
    line: int


def modules(root: Path) -> dict[str, Path]:
    """Every module of our packages under `root`, by dotted name (migrations left out)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(root: Path) -> list[Import]:
    """Each import of one of our modules by another: `from a import b` is an import of
    `a.b` when that is a module, else of `a`. Parent packages imported on the way (empty
    __init__ files) are not counted."""
    known = modules(root)
    found = []
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != module and target not in PACKAGES:
                    found.append(Import(module, target, node.lineno))
    return found


def circles(edges: Iterable[Import]) -> list[list[str]]:
    """The import circles (strongly connected sets of two modules or more), Tarjan's way."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _domain(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "conversations" or len(parts) < 3 or parts[1] in APP_FOLDERS:
        return None
    return parts[1]


def wrong_way(edges: Iterable[Import]) -> list[str]:
    """Every import against the rules in this module's docstring."""
    problems = []
    for edge in edges:
        where = f"{edge.source}:{edge.line} imports {edge.target}"
        source, target = _domain(edge.source), _domain(edge.target)
        if edge.source.startswith("chatsite") and edge.target.startswith("conversations"):
            problems.append(f"{where}: chatsite/ names domains only in URLs and settings")
        if source in ALLOWED and target and target != source and target not in ALLOWED[source]:
            problems.append(f"{where}: {source} may not import {target}")
        source_name = edge.source.rpartition(".")[2]
        if edge.target.rpartition(".")[2] in VIEWS and source_name != "urls":
            problems.append(f"{where}: only a urls module imports a views module")
    return problems


def test_the_code_has_no_import_circle():
    assert circles(imports(ROOT)) == []


def test_every_import_points_the_way_the_layout_says():
    assert wrong_way(imports(ROOT)) == []


def test_every_domain_package_is_known_to_the_rules():
    domains = {_domain(module) for module in modules(ROOT)} - {None}
    assert domains <= set(ALLOWED), domains - set(ALLOWED)


# --- The checks themselves catch what they are for (on a small made-up tree) ---


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        for folder in [root / package, *(root / package).rglob("*")]:
            if folder.is_dir() and not (folder / "__init__.py").exists():
                (folder / "__init__.py").write_text("")
    return root


def test_a_circle_through_a_lazy_import_is_found(tmp_path):
    root = write(
        tmp_path,
        {
            "conversations/chat/services.py": "from . import tasks\n",
            "conversations/chat/tasks.py": "def run():\n    from .services import x\n",
        },
    )
    assert circles(imports(root)) == [["conversations.chat.services", "conversations.chat.tasks"]]


@pytest.mark.parametrize(
    ("source", "text", "problem"),
    [
        ("upstream/client.py", "from conversations.chat import models", "upstream may not"),
        ("billing/budgets.py", "import conversations.chat.models", "billing may not import chat"),
        ("chat/forms.py", "from conversations.usage import reports", "chat may not import usage"),
        ("chat/replies.py", "from .views import x", "only a urls module imports a views"),
        ("../chatsite/health.py", "from conversations.chat import models", "chatsite/ names"),
    ],
)  # fmt: skip
def test_an_import_against_the_direction_is_found(tmp_path, source, text, problem):
    root = write(
        tmp_path,
        {
            f"conversations/{source}": text,
            "conversations/chat/models.py": "",
            "conversations/chat/views.py": "x = 1\n",
            "conversations/usage/reports.py": "",
            "conversations/usage/views.py": "x = 1\n",
        },
    )
    [found] = wrong_way(imports(root))
    assert problem in found
