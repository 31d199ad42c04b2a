"""The namespace layout's guards: core/, plugins/, registry/ install as fusionrec.* and never at top level."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "fusionrec.core", "plugins": "fusionrec.plugins", "registry": "fusionrec.registry"}
BARE = set(FOLDERS)


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def packages_on_disk() -> set[str]:
    found = set()
    for folder, dotted in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([dotted, *rel.parts]))
    return found


def test_packages_on_disk_are_exactly_the_listed_packages() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    assert packages_on_disk() == listed, "add every sub-package to [tool.setuptools].packages (and only those)"


def test_every_folder_with_python_files_is_a_package() -> None:
    for folder in FOLDERS:
        for source in (REPO / folder).rglob("*.py"):
            assert (source.parent / "__init__.py").exists(), f"{source.parent} has modules but no __init__.py"


def test_package_dir_maps_the_three_folders() -> None:
    assert pyproject()["tool"]["setuptools"]["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_every_package_is_typed() -> None:
    for package in packages_on_disk():
        folder = REPO / package.split(".")[1] / Path(*package.split(".")[2:])
        assert (folder / "py.typed").exists(), f"{folder} lacks py.typed"


def test_no_namespace_root_init() -> None:
    assert not (REPO / "fusionrec").exists()
    import fusionrec

    assert getattr(fusionrec, "__file__", None) is None, "fusionrec must stay a namespace package"


def test_bare_folder_names_never_become_modules() -> None:
    for dotted in FOLDERS.values():
        package = importlib.import_module(dotted)
        for info in pkgutil.walk_packages(package.__path__, prefix=dotted + "."):
            importlib.import_module(info.name)
    assert not BARE & set(sys.modules), f"bare modules imported: {BARE & set(sys.modules)}"


@pytest.mark.slow
def test_non_editable_install_has_no_top_level_core_plugins_registry(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    top = {p.name for p in target.iterdir()}
    assert not BARE & top, f"top-level folders installed: {BARE & top}"
    assert {name for name in top if not name.endswith(".dist-info")} <= {"fusionrec", "bin"}
    assert not (target / "fusionrec" / "__init__.py").exists()
    for package in pyproject()["tool"]["setuptools"]["packages"]:
        assert (target / Path(*package.split(".")) / "__init__.py").exists(), f"{package} missing from the install"
        assert (target / Path(*package.split(".")) / "py.typed").exists(), f"{package} installed without py.typed"
    templates = REPO / "registry" / "templates"
    shipped = target / "fusionrec" / "registry" / "templates"
    expected = sorted(p.relative_to(templates).as_posix() for p in templates.rglob("*.tmpl"))
    assert expected and sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*.tmpl")) == expected, (
        "the templates of `fusionrec plugins new` are missing from the install: list them in package-data"
    )
    static = target / "fusionrec" / "core" / "serve" / "static"
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in static.glob("*")}, (
        "the page of `fusionrec serve` (core/serve/static) is missing from the install: list it in package-data"
    )
    (info,) = target.glob("fusionrec-*.dist-info")
    entry_points = (info / "entry_points.txt").read_text()
    assert "fusionrec = fusionrec.core.cli:main" in entry_points
    assert "fusionrec = fusionrec.registry.testing" in entry_points

    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import fusionrec.core.cli as c, fusionrec.plugins.fusers.attention_impl as n;"
        " print(c.__file__); print(n.__file__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    for line in result.stdout.split():
        assert line.startswith(str(target)), f"imported from outside the install: {line}"
    listing = subprocess.run(
        [sys.executable, "-m", "fusionrec.core.cli", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert listing.returncode == 0 and "fuser:attention" in listing.stdout, listing.stderr
