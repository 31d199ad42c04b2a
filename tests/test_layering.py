"""What may import what (docs/architecture.md), checked on the source with the ast module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "fusionrec.core", "plugins": "fusionrec.plugins", "registry": "fusionrec.registry"}
BASE_NAMES = (
    "errors",
    "params",
    "io",
    "encoder",
    "fusion",
    "user_tower",
    "retrieval",
    "ranking",
    "data",
    "metric",
    "model",
)
CORE_BASE = {f"fusionrec.core.{m}" for m in BASE_NAMES} | {"fusionrec.core"}
ASSEMBLY = {"fusionrec.core.config", "fusionrec.core.pipeline", "fusionrec.core.cli"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, dotted in FOLDERS.items():
        for source in (REPO / folder).rglob("*.py"):
            parts = list(source.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([dotted, *parts])] = source
    return found


MODULES = modules()


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """fusionrec modules imported by a file (module level only, or anywhere in it)."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    if top_level_only:
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        for item in ast.walk(node) if not top_level_only else [node]:
            if isinstance(item, ast.Import):
                found.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
                for alias in item.names:
                    submodule = f"{item.module}.{alias.name}"
                    # `from pkg import submodule` depends on the submodule; `from pkg import name` on pkg itself
                    found.add(submodule if submodule in MODULES else item.module)
    return {name for name in found if name in MODULES}


def test_the_scan_sees_the_modules() -> None:
    assert "fusionrec.core.fusion" in MODULES and "fusionrec.registry.manager" in MODULES
    assert "fusionrec.core.errors" in imports(MODULES["fusionrec.registry.tables"], top_level_only=True)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n in CORE_BASE))
def test_core_interfaces_import_only_core_interfaces(name: str) -> None:
    assert imports(MODULES[name], top_level_only=False) <= CORE_BASE


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("fusionrec.core")))
def test_core_never_imports_a_concrete_plugin(name: str) -> None:
    assert not {m for m in imports(MODULES[name], top_level_only=False) if m.startswith("fusionrec.plugins")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("fusionrec.registry")))
def test_registry_never_imports_assembly_cli_or_plugins(name: str) -> None:
    found = imports(MODULES[name], top_level_only=False)
    assert not found & ASSEMBLY
    assert not {m for m in found if m.startswith("fusionrec.plugins")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("fusionrec.plugins")))
def test_plugins_do_not_import_the_assembly(name: str) -> None:
    assert not imports(MODULES[name], top_level_only=False) & ASSEMBLY


def test_no_import_cycle_between_files() -> None:
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
