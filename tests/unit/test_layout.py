"""The layout docs/architecture.md promises: no import circles, decoders never import the
harness, gates never import the reports, harness/ keeps its phases in packages (few top-level
modules), and every exception of the harness is a DecoderbenchError."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "decoders", "reports")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its body (function-level included)."""
    files = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert strongly_connected(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_decoders_never_import_the_harness_or_the_reports() -> None:
    for module, targets in import_graph().items():
        if module.startswith("decoders"):
            assert not {t for t in targets if not t.startswith("decoders")}, module


def test_gates_never_import_the_reports() -> None:
    """Gates are a phase before reports: both read a run through harness/view, never one another."""
    for module, targets in import_graph().items():
        if module.startswith("harness.gates"):
            assert not {t for t in targets if t.startswith("reports")}, module


def test_harness_keeps_its_phases_in_packages() -> None:
    top = sorted(p.name for p in (REPO / "harness").glob("*.py") if not p.name.startswith("__"))
    assert len(top) <= 10, top
    for package in ("suite", "sources", "workers", "store", "view", "metrics", "judge", "gates", "cli"):
        assert (REPO / "harness" / package / "__init__.py").is_file(), package


def test_every_verb_lives_under_harness_cli() -> None:
    from harness.cli import app

    for info in app.registered_commands:
        assert info.callback.__module__.startswith("harness.cli."), info.callback.__module__
    for group in app.registered_groups:
        for info in group.typer_instance.registered_commands:
            assert info.callback.__module__.startswith("harness.cli."), info.callback.__module__


BUILTIN_EXCEPTIONS = {"Exception", "ValueError", "RuntimeError", "KeyError", "OSError", "TypeError",
                      "LookupError", "ArithmeticError"}


def test_every_exception_of_the_harness_and_the_reports_is_a_decoderbench_error() -> None:
    """One base for the command line to catch (decoders/ keeps its own: it never imports harness)."""
    bases: dict[str, list[str]] = {}
    for package in ("harness", "reports"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases[node.name] = [b.id if isinstance(b, ast.Name) else ast.unparse(b)
                                        for b in node.bases]

    def reaches(name: str, seen: frozenset[str] = frozenset()) -> bool | None:
        """True: DecoderbenchError first; False: a builtin exception without it; None: no exception."""
        if name == "DecoderbenchError":
            return True
        if name in BUILTIN_EXCEPTIONS:
            return False
        found = [reaches(base, seen | {name}) for base in bases.get(name, []) if base not in seen]
        return True if True in found else False if False in found else None

    strays = sorted(name for name in bases if reaches(name) is False)
    assert strays == [], strays
