"""The example plugin package examples/plugins/fusionrec-gmu, installed for real: discovery end to end.

``make test`` installs it (non-editable) before running pytest. These tests then check what a user sees: the
entry point is found, ``fusionrec plugins`` lists it with its distribution, pipelines using ``gmu.gated_unit``
validate, a misspelt name gets a suggestion, and both ways of switching plugins off work.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusionrec.registry import Registry, get_registry, reset
from fusionrec.registry.manager import DISABLE_ENV, ENTRY_POINT_GROUP, NO_AUTOLOAD_ENV
from fusionrec.registry.testing import check_component

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugins" / "fusionrec-gmu"
DIST = "fusionrec-gmu"
VERSION = "0.1.0"
PLUGIN = "gmu"
FUSER = "gmu.gated_unit"
INSTALL = f"pip install --no-deps --no-build-isolation --force-reinstall ./{EXAMPLE.relative_to(REPO)}"


def _installed_distribution() -> metadata.Distribution | None:
    try:
        return metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return None


_found = _installed_distribution()
if _found is None:
    pytest.fail(
        f"the example plugin package {DIST} is not installed in this environment, so plugin discovery cannot be "
        f"tested. `make test` installs it before running pytest; to run these tests on their own, first run "
        f"`.venv/bin/{INSTALL}`.",
        pytrace=False,
    )
INSTALLED: metadata.Distribution = _found

PIPELINE = "fusionrec: 1\nfuser: {type: gmu.gated_unit, dim: 16}\n"
MISSPELT = "fusionrec: 1\nfuser: {type: gmu.gated_unt, dim: 16}\n"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``fusionrec ARGS`` in a fresh interpreter, with plugins enabled unless ``env`` says otherwise."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in (DISABLE_ENV, NO_AUTOLOAD_ENV, "FUSIONREC_DEBUG", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    # a wide, colourless console: rich folds table cells to the terminal width (80 when not a terminal)
    clean.update(COLUMNS="200", NO_COLOR="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "fusionrec.core.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def plugins_json(cwd: Path, **env: str) -> list[dict[str, Any]]:
    result = cli("plugins", "--json", cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "gmu.yaml"
    path.write_text(PIPELINE, encoding="utf-8")
    return path


def test_installed_distribution_declares_the_entry_point() -> None:
    assert INSTALLED.version == VERSION
    points = [ep for ep in INSTALLED.entry_points if ep.group == ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in points] == [(PLUGIN, "fusionrec_gmu.plugin")]


def test_installed_copy_matches_the_source() -> None:
    import fusionrec_gmu

    installed = Path(fusionrec_gmu.__file__).resolve().parent
    source = EXAMPLE / "fusionrec_gmu"
    stale = [
        path.name
        for path in sorted(source.glob("*.py"))
        if not (installed / path.name).is_file() or (installed / path.name).read_bytes() != path.read_bytes()
    ]
    assert not stale, (
        f"the installed fusionrec_gmu ({installed}) is older than {source} ({', '.join(stale)} differ): "
        f"`make test` reinstalls it, or run `.venv/bin/{INSTALL}`"
    )


def test_plugins_json_lists_the_entry_point_plugin(tmp_path: Path) -> None:
    rows = plugins_json(tmp_path)
    by_name = {row["name"]: row for row in rows}
    assert PLUGIN in by_name, f"plugin {PLUGIN!r} not discovered; found {sorted(by_name)}"
    assert by_name[PLUGIN] == {
        "name": PLUGIN,
        "source": "entrypoint",
        "distribution": DIST,
        "version": VERSION,
        "components": [f"fuser:{FUSER}"],
        "error": None,
        "blocked": False,
    }
    assert [row["name"] for row in rows].count(PLUGIN) == 1


def test_plugins_table_shows_the_distribution(tmp_path: Path) -> None:
    result = cli("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = next((line for line in result.stdout.splitlines() if f" {PLUGIN} " in line), None)
    assert row is not None, f"no row for plugin {PLUGIN!r} in:\n{result.stdout}"
    assert "entrypoint" in row and f"{DIST} {VERSION}" in row and f"fuser:{FUSER}" in row, row
    assert PLUGIN not in result.stderr, f"a warning about the plugin:\n{result.stderr}"


def test_validate_a_pipeline_using_the_plugin(tmp_path: Path, pipeline: Path) -> None:
    result = cli("validate", str(pipeline), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"valid (fuser={FUSER})" in result.stdout
    assert result.stderr == ""


def test_validate_resolved_fills_in_the_plugin_defaults(tmp_path: Path, pipeline: Path) -> None:
    result = cli("validate", "--resolved", str(pipeline), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"type: {FUSER}" in result.stdout
    assert "dim: 16" in result.stdout
    assert "dropout: 0.0" in result.stdout


def test_validate_a_misspelt_name_suggests_the_right_one(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(MISSPELT, encoding="utf-8")
    result = cli("validate", str(path), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"Did you mean '{FUSER}'?" in result.stderr
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "env", [{DISABLE_ENV: PLUGIN}, {DISABLE_ENV: f"something_else, {PLUGIN}"}, {NO_AUTOLOAD_ENV: "1"}]
)
def test_switching_plugins_off_makes_the_fuser_unavailable(tmp_path: Path, pipeline: Path, env: dict[str, str]) -> None:
    rows = plugins_json(tmp_path, **env)
    by_name = {row["name"]: row for row in rows}
    assert "fusionrec.plugins.fusers.attention" in by_name, "the built-ins must still load"
    if NO_AUTOLOAD_ENV in env:
        assert PLUGIN not in by_name  # entry points are not even looked at
    else:
        assert by_name[PLUGIN]["blocked"] is True, "a blocked plugin is listed as installed but blocked"
    assert not any(f"fuser:{FUSER}" in row["components"] for row in rows)

    result = cli("validate", str(pipeline), cwd=tmp_path, **env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"unknown fuser '{FUSER}'" in result.stderr
    if NO_AUTOLOAD_ENV not in env:
        assert f"Installed but not loaded: '{PLUGIN}' (blocked)" in result.stderr
    assert "Traceback" not in output


def test_blocking_another_name_keeps_the_plugin(tmp_path: Path) -> None:
    rows = plugins_json(tmp_path, **{DISABLE_ENV: "gm,gmu_other"})
    assert PLUGIN in [row["name"] for row in rows]


@pytest.fixture
def process_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The process-wide registry, rebuilt with every installed plugin enabled, and forgotten afterwards."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(NO_AUTOLOAD_ENV, raising=False)
    reset()
    try:
        yield get_registry()
    finally:
        reset()


def test_process_wide_registry_has_the_fuser(process_registry: Registry) -> None:
    info = process_registry.table("fuser")[FUSER]
    assert (info.plugin, info.distribution, info.version) == (PLUGIN, DIST, VERSION)
    assert process_registry.plugins[PLUGIN].source == "entrypoint"
    fuser = check_component("fuser", FUSER)  # no registry given: the process-wide one
    assert type(fuser).__module__ == "fusionrec_gmu.fuser"
    assert fuser.out_dim == 64
