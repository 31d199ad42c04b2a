"""The command line: what users see, exit codes, no tracebacks for user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusionrec.core import cli

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process, as a user would."""
    import os

    return subprocess.run(
        [sys.executable, "-m", "fusionrec.core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=REPO,
    )


@pytest.fixture
def pipeline(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str) -> Path:
        path = tmp_path / "pipeline.yaml"
        path.write_text(text)
        return path

    return write


def test_validate_accepts_a_good_pipeline(pipeline) -> None:  # type: ignore[no-untyped-def]
    result = run("validate", str(pipeline("fusionrec: 1\nfuser: {type: attention, dim: 16}\n")))
    assert result.returncode == 0, result.stderr
    assert "valid (fuser=attention)" in result.stdout


def test_validate_misspelt_fuser_prints_file_path_line_suggestion(pipeline) -> None:  # type: ignore[no-untyped-def]
    path = pipeline("fusionrec: 1\nfuser:\n  type: atention\n  dim: 64\n")
    result = run("validate", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {path}:3: fuser.type: unknown fuser 'atention'. Did you mean 'attention'? Available: "
        + ", ".join(sorted(cli.get_registry().table("fuser")))
        + "."
    )
    assert "Traceback" not in result.stderr


def test_validate_unknown_parameter_reported_the_same_way(pipeline) -> None:  # type: ignore[no-untyped-def]
    path = pipeline("fusionrec: 1\nfuser:\n  type: attention\n  dimension: 64\n")
    result = run("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:4: fuser.dimension: unknown parameter 'dimension' for fuser 'attention'." in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(pipeline) -> None:  # type: ignore[no-untyped-def]
    result = run("--debug", "validate", str(pipeline("fusionrec: 1\nfuser: atention\n")))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UnknownComponentError" in result.stderr


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: <top level>: cannot read the pipeline file: No such file or directory." in result.stderr


def test_resolved_prints_every_default_and_round_trips(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("validate", "--resolved", str(pipeline("fusionrec: 1\nfuser: concat\n")))
    assert result.returncode == 0, result.stderr
    assert "fuser:\n  type: concat\n  dim: null\n  hidden: []\n  dropout: 0.0\n" in result.stdout
    again = tmp_path / "resolved.yaml"
    again.write_text(result.stdout)
    second = run("validate", "--resolved", str(again))
    assert second.stdout == result.stdout


def test_run_quickstart_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FUSIONREC_CACHE": str(tmp_path / "cache")}
    out = str(tmp_path / "run")
    result = run("run", "examples/quickstart.yaml", "--out", out, "-q", env=env)
    assert result.returncode == 0, result.stderr
    assert "fuser 'attention'" in result.stdout
    assert "fusionrec.plugins.fusers.attention" in result.stdout
    assert "dataset 'movielens'" in result.stdout and "interactions: 27,021" in result.stdout
    assert "split (temporal): train 22,063 / valid 2,479 / test 2,479 interactions" in result.stdout
    assert "image: timm (image, dim 1280): 300 items: 300 present" in result.stdout
    assert "text: sentence_transformer (text, dim 384): 300 items: 300 present" in result.stdout
    assert "300 encoded now, 0 from cache" in result.stdout
    assert "recall@20" in result.stdout and "ndcg@20" in result.stdout and "95% CI" in result.stdout
    assert "reranking" in result.stdout and "user 1: top 10" in result.stdout
    assert (tmp_path / "run" / "report.md").exists() and (tmp_path / "run" / "report.png").exists()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    again = run("run", "examples/quickstart.yaml", "--out", out, "-q", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("0 encoded now, 300 from cache") == 2
    # the finished training is not redone
    assert (
        json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["train"] == manifest["stages"]["train"]
    )
    # served and exact rows; the table printed is the list that runs (one row per stage of STAGES)
    from fusionrec.core.engine.stages import STAGE_NAMES

    assert "│ served │" in result.stdout and "│ exact  │" in result.stdout and "index: recall@20" in result.stdout
    assert all(f"│ {name}" in result.stdout for name in STAGE_NAMES)
    # one run parses the YAML once and loads the data once (here in-process, on the finished run)
    import fusionrec.core.assembly.config as config
    from fusionrec.plugins.datasets.movielens_impl import MovieLens

    calls = {"parse": 0, "load": 0}
    parse, load = config.parse_pipeline, MovieLens.load

    def counting_parse(*args: object, **kwargs: object) -> object:
        calls["parse"] += 1
        return parse(*args, **kwargs)  # type: ignore[arg-type]

    def counting_load(self: MovieLens) -> object:
        calls["load"] += 1
        return load(self)

    monkeypatch.setattr(config, "parse_pipeline", counting_parse)
    monkeypatch.setattr(MovieLens, "load", counting_load)
    monkeypatch.setenv("FUSIONREC_CACHE", str(tmp_path / "cache"))
    assert cli.main(["run", "examples/quickstart.yaml", "--out", out, "-q"]) == 0
    assert calls == {"parse": 1, "load": 1}, calls
    assert "user 1: top 10" in capsys.readouterr().out


def test_plugins_lists_builtins_with_origin() -> None:
    result = run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    attention = rows["fusionrec.plugins.fusers.attention"]
    assert attention["source"] == "builtin"
    assert attention["distribution"] == "fusionrec"
    assert attention["components"] == ["fuser:attention"]
    assert attention["error"] is None
    table = run("plugins").stdout
    assert "fusionrec.plugins.fusers.concat" in table and "fuser:concat" in table


def test_plugins_info_shows_parameters() -> None:
    result = run("plugins", "info", "attention")
    assert result.returncode == 0, result.stderr
    for text in ("fuser 'attention'", "dim", "temperature", "float | null", "> 0", "128", "sqrt(dim)"):
        assert text in result.stdout


def test_plugins_info_by_plugin_name_and_kind_prefix() -> None:
    assert "fuser 'concat'" in run("plugins", "info", "fusionrec.plugins.fusers.concat").stdout
    assert "fuser 'concat'" in run("plugins", "info", "fuser:concat").stdout


def test_plugins_info_unknown_name_suggests() -> None:
    result = run("plugins", "info", "atention")
    assert result.returncode == 2
    assert "no component or plugin called 'atention'. Did you mean 'attention'?" in result.stderr


def test_broken_plugins_are_listed_and_warned_about(fake_dist) -> None:  # type: ignore[no-untyped-def]
    from plugin_sources import BROKEN_IMPORT

    info = fake_dist("broken-plugin", "0.3.0", {"broken": "broken_mod"}, {"broken_mod": BROKEN_IMPORT})
    env = {"PYTHONPATH": str(info.parent)}
    listing = run("plugins", env=env)
    assert listing.returncode == 0
    assert "failed: RuntimeError: this plugin cannot be imported" in listing.stdout
    assert "warning: plugin 'broken' (broken-plugin 0.3.0) failed to load and is skipped" in listing.stderr
    validated = run("validate", "examples/quickstart.yaml", env=env)
    assert validated.returncode == 0 and "warning: plugin 'broken'" in validated.stderr


def test_usage_errors_exit_2() -> None:
    assert run("validate").returncode == 2
    assert run("no-such-command").returncode == 2


def test_internal_errors_print_one_line_without_debug(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def explode() -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "get_registry", explode)
    monkeypatch.delenv("FUSIONREC_DEBUG", raising=False)
    assert cli.main(["plugins"]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaboom" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "plugins"])


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and "fusionrec" in result.stdout
