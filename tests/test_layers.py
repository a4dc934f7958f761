"""Layers point one way: CLI -> library -> core, and no module imports itself back through another.

Read from the source with `ast` (nothing imported), so every import counts: top-level, inside functions,
and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "k210.core", "host": "k210.host", "converters": "k210.converters", "models": "k210.models",
            "firmware/maixpy": "k210.firmware"}
# The command-line layer: argument parsing, the envelope's printing, and the demo that drives the CLI as a user.
CLI_MODULES = {"k210.host.cli", "k210.host.cliutil", "k210.host.dataargs", "k210.host.demo"}
CLI_PACKAGES = ("k210.host.commands",)


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                out.add(full if full in MODULES else module)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_cli(name: str) -> bool:
    return name in CLI_MODULES or name.startswith(CLI_PACKAGES)


def test_the_graph_was_read():
    assert len(GRAPH) > 100
    assert "k210.core.errors" in GRAPH["k210.converters.compile"]


def test_core_imports_nothing_above_it():
    bad = {n: sorted(d for d in deps if not d.startswith("k210.core"))
           for n, deps in GRAPH.items() if n.startswith("k210.core")}
    assert not {n: d for n, d in bad.items() if d}


def test_converters_and_models_never_reach_into_host():
    bad = {n: sorted(d for d in deps if d.startswith("k210.host"))
           for n, deps in GRAPH.items() if n.startswith(("k210.converters", "k210.models"))}
    assert not {n: d for n, d in bad.items() if d}


def test_library_code_never_imports_the_cli():
    bad = {n: sorted(d for d in deps if _is_cli(d)) for n, deps in GRAPH.items() if not _is_cli(n)}
    assert not {n: d for n, d in bad.items() if d}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []
