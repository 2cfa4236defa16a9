"""The layers on disk hold: no import cycles, no arrow upwards, a pure core.

The import graph is read from the source (every `import`, including function-local and
`TYPE_CHECKING` ones), so a cycle hidden behind a lazy import is still a cycle here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ROOTS = {"photos_sync": REPO / "photos_sync", "photos_sync_daemon": REPO / "daemon"}

#: Lowest first. A module may import its own layer and the ones before it, never a later one.
LAYERS = (
    "photos_sync.core",
    "photos_sync.storage",
    "photos_sync.system",
    "photos_sync.credentials",
    "photos_sync.rclone",
    "photos_sync.cloud",
    "photos_sync.immich",
    "photos_sync.reporting",
    "photos_sync.engine",
    "photos_sync_daemon",
    "photos_sync.cli",
)

#: What the pure layer must never load: the DB driver, subprocesses, terminals, HTTP, sockets.
IO_MODULES = (
    "aiosqlite",
    "sqlite3",
    "asyncio",
    "subprocess",
    "socket",
    "rich",
    "typer",
    "structlog",
    "apprise",
    "platformdirs",
    "dotenv",
    "urllib.request",
    "http.client",
)


def _module_files() -> Iterator[tuple[str, Path]]:
    for top, folder in PACKAGE_ROOTS.items():
        base = folder if top == "photos_sync" else folder / top
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            dotted = ".".join((top, *parts))
            yield dotted.removesuffix(".__init__"), path


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports, resolved to the most specific known module."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = dict(_module_files())
    known = set(files)
    return {module: _imports(module, path, known) for module, path in files.items()}


def _layer(module: str) -> int | None:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_every_module() -> None:
    graph = _graph()
    assert "photos_sync.engine.runner" in graph
    assert "photos_sync_daemon.app" in graph
    # The reader sees a lazy (function-local) import: the CLI starts the daemon through one.
    assert "photos_sync_daemon.app" in set().union(
        *(targets for module, targets in graph.items() if module.startswith("photos_sync.cli"))
    )


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_lives_in_a_layer() -> None:
    homeless = [
        module
        for module in _graph()
        if _layer(module) is None and module not in ("photos_sync", "photos_sync_daemon")
    ]
    assert homeless == []


def test_no_layer_imports_a_higher_one() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if (low := _layer(module)) is not None
        and (high := _layer(target)) is not None
        and high > low
    )
    assert upward == []


def test_the_core_source_imports_no_io_module() -> None:
    offending = []
    for module, path in _module_files():
        if _layer(module) != 0:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if any(name == io or name.startswith(io + ".") for io in IO_MODULES):
                    offending.append(f"{module}: {name}")
    assert offending == []


@pytest.mark.parametrize("package", ["photos_sync.core"])
def test_importing_the_core_loads_no_io_library(package: str) -> None:
    """In a fresh interpreter, every core module together pulls in none of the I/O libraries."""
    core = sorted(module for module, _ in _module_files() if _layer(module) == 0)
    assert len(core) > 10  # the layer is really there, not an empty folder
    script = (
        "import importlib, json, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    loaded = json.loads(output)
    assert package in loaded
    heavy = [
        name for name in loaded if any(name == io or name.startswith(io + ".") for io in IO_MODULES)
    ]
    assert heavy == []
