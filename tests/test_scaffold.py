"""`fusionrec plugins new`: generated packages are lint-clean, their own tests pass out of the box, and once
installed (non-editably, into an isolated target) fusionrec discovers them with their distribution and version.

Nothing is installed into the shared environment: that would add the plugins to every other test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusionrec.core.cli import main
from fusionrec.core.errors import FusionrecError
from fusionrec.registry import HOOK_VERSION, KINDS, get_registry
from fusionrec.registry.scaffold import (
    COMMON_FILES,
    KIND_FILES,
    KIND_TEMPLATES,
    PLACEHOLDER,
    create_plugin,
    package_files,
    template_root,
    variables,
)

ROUND_TRIP_KINDS = ("fuser", "retriever")  # a kind with a full contract, and one with the generic contract
RUFF = Path(sys.executable).parent / "ruff"


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONREC_") and k != "PYTHONPATH"}
    return {**clean, "COLUMNS": "200", "NO_COLOR": "1", **extra}


def run(*args: str | Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env(**extra), timeout=300, check=False
    )


def test_every_kind_has_a_template_and_every_template_is_used() -> None:
    assert set(KIND_TEMPLATES) == {kind.name for kind in KINDS}
    on_disk = {p.relative_to(template_root()).as_posix() for p in template_root().rglob("*.tmpl")}
    used = {src for src, _ in COMMON_FILES} | {f"{kind}/{src}" for kind in KIND_TEMPLATES for src, _ in KIND_FILES}
    assert on_disk == used


@pytest.mark.parametrize("kind", list(KIND_TEMPLATES))
def test_generated_files_have_no_placeholder_left(kind: str) -> None:
    files = package_files("acme", kind)
    assert {"pyproject.toml", "README.md", "fusionrec_acme/plugin.py", "fusionrec_acme/py.typed"} <= set(files)
    for path, text in files.items():
        assert not PLACEHOLDER.search(text) and "@@" not in text, path
    assert 'acme = "fusionrec_acme.plugin"' in files["pyproject.toml"]
    assert 'name = "fusionrec-acme"' in files["pyproject.toml"]
    assert f"fusionrec_hook_version = {HOOK_VERSION}" in files["fusionrec_acme/plugin.py"]
    assert f'"{variables("acme", kind)["component"]}"' in files["fusionrec_acme/plugin.py"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Acme", "use a lower-case identifier"),
        ("acme-fusers", "For example: fusionrec plugins new acme_fusers"),
        ("1acme", "use a lower-case identifier"),
        ("", "use a lower-case identifier"),
        ("class", "it is a Python keyword"),
        ("fusionrec_extra", "the fusionrec_ prefix is added for you"),
        ("a" * 25, "longer than 24 characters"),
    ],
)
def test_invalid_names_are_refused_with_a_reason(name: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(FusionrecError, match=re.escape(message)):
        create_plugin(name, "fuser", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fusionrec-acme").mkdir()
    (tmp_path / "fusionrec-acme" / "mine.txt").write_text("keep me")
    assert main(["plugins", "new", "acme", "--dest", str(tmp_path)]) == 2
    assert "already exists; fusionrec plugins new never overwrites a folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "fusionrec-acme").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fusionrec-acme"]  # no staging folder left behind


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["plugins", "new", "acme_tools", "--kind", "metric", "--dest", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    folder = tmp_path / "fusionrec-acme-tools"
    assert f"created {folder} with the metric acme_tools.hit_rate:" in printed
    assert f"next: pip install -e {folder}" in printed
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written == set(package_files("acme_tools", "metric"))


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (dev extra)")
def test_generated_code_is_lint_clean_and_formatted(tmp_path: Path) -> None:
    for kind in KIND_TEMPLATES:
        for name in ("acme", "x" * 24):  # the longest name must fit the line length too
            folder = create_plugin(name, kind, tmp_path / kind)
            for command in (["check", "--no-cache", "--quiet", "."], ["format", "--no-cache", "--check", "."]):
                result = run(RUFF, *command, cwd=folder)
                assert result.returncode == 0, f"{kind} {name}: ruff {command[0]}\n{result.stdout}{result.stderr}"


def test_generated_tests_pass_for_every_kind(tmp_path: Path) -> None:
    if "temporal" not in get_registry().table("split"):
        pytest.skip("the dataset template's default split `temporal` is not a registered split yet")
    folders = [create_plugin(f"p{kind.replace('_', '')}", kind, tmp_path) for kind in KIND_TEMPLATES]
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # one run over several packages: no package's own config
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",  # every package has a tests/test_plugin.py
        "-c",
        tmp_path / "pytest.ini",
        "--rootdir",
        tmp_path,
        *(folder / "tests" for folder in folders),
        cwd=tmp_path,
        PYTHONPATH=os.pathsep.join(str(folder) for folder in folders),
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", result.stdout) and "failed" not in result.stdout


@pytest.mark.slow
def test_round_trip_generate_install_test_discover(tmp_path: Path) -> None:
    """The brief's round trip: generate, install non-editably into an isolated target, run the package's own
    tests against the installed copy, and see `fusionrec plugins --json` list it with distribution and version."""
    site = tmp_path / "site"
    folders = {kind: create_plugin(f"rt_{kind}", kind, tmp_path / "src") for kind in ROUND_TRIP_KINDS}
    pip = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-compile",
        "--target",
        site,
        *folders.values(),
        cwd=tmp_path,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    for kind, folder in folders.items():
        module = f"fusionrec_rt_{kind}"
        assert (site / module / "plugin.py").is_file() and (site / module / "py.typed").is_file()
        # cwd is tmp_path: neither cwd nor the source folder is on sys.path, so the tests import the installed copy
        tests = run(
            sys.executable,
            "-m",
            "pytest",
            folder / "tests",
            "-p",
            "no:cacheprovider",
            cwd=tmp_path,
            PYTHONPATH=str(site),
        )
        assert tests.returncode == 0, f"{kind}: {tests.stdout[-4000:]}{tests.stderr[-2000:]}"
        assert re.search(r"\b\d+ passed\b", tests.stdout) and " failed" not in tests.stdout
        assert (
            f"{site / module}"
            in run(
                sys.executable,
                "-c",
                f"import {module}.plugin as p; print(p.__file__)",
                cwd=tmp_path,
                PYTHONPATH=str(site),
            ).stdout
        )

    listing = run(sys.executable, "-m", "fusionrec.core.cli", "plugins", "--json", cwd=tmp_path, PYTHONPATH=str(site))
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    for kind in ROUND_TRIP_KINDS:
        component = variables(f"rt_{kind}", kind)["component"]
        assert rows[f"rt_{kind}"] == {
            "name": f"rt_{kind}",
            "source": "entrypoint",
            "distribution": f"fusionrec-rt-{kind}",
            "version": "0.1.0",
            "components": [f"{kind}:{component}"],
            "error": None,
            "blocked": False,
        }
    shutil.rmtree(site)
