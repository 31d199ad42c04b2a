"""The run lifecycle a user can trust (issue #18): each reproduction of the issue, with the fixed behaviour.

1. `validate` reports what `run` would refuse, and `run` refuses before writing anything.
2. An edited pipeline reruns what changed (key-by-key diff), `--fresh` starts over, `--redo` forces a stage.
3. The reranker is reproducible, and not applied when its validation verdict is negative (unless asked).
4. A damaged or deleted artifact is repaired by `run` (a stage is done only when its artifacts verify).
5. One writer per run folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from train_fixtures import write_pipeline

from fusionrec.core.api import Pipeline, Run
from fusionrec.core.cli import main
from fusionrec.core.engine.rundir import RunDir, RunError, writer_lock
from fusionrec.registry import get_registry

FAST = "{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}"
RANKED = "retriever: {type: faiss, index: Flat, metric: ip}\nranker: {type: logistic, epochs: 20}\n"


def stages_status(run: Path) -> dict[str, str]:
    return {name: entry.get("status") for name, entry in RunDir.open(run).manifest["stages"].items()}


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lifecycle")
    pipeline = write_pipeline(folder, train=FAST, extra=RANKED)
    assert main(["run", str(pipeline), "--out", str(folder / "run"), "-q"]) == 0
    return pipeline, folder / "run"


def test_1_validate_reports_what_run_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, user="")  # data, encoders, fuser, train: no user tower
    assert main(["validate", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert "user: the pipeline has no `user` section" in err and f"{pipeline}:" in err
    assert main(["run", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert not (tmp_path / "run").exists()  # refused before writing anything
    # once fixed, the same --out runs (nothing left behind to refuse it)
    pipeline.write_text(pipeline.read_text() + "user: {type: mean}\n")
    assert main(["validate", str(pipeline)]) == 0
    assert main(["run", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 0


def test_1_validate_names_every_runnability_problem_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = write_pipeline(tmp_path, user="", encoders=False, train="{epochs: 1, item_ids: false}")
    assert main(["validate", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "train.item_ids" in err and ":8: train.item_ids" in err


def test_2_downstream_edit_redoes_only_what_changed(
    ranked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, run = ranked
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    trained = (copy / "item_vectors.npy").read_bytes()
    edited = pipeline.parent / "edited.yaml"
    edited.write_text(
        pipeline.read_text().replace("epochs: 20", "epochs: 5").replace("data/", f"{pipeline.parent}/data/")
    )
    capsys.readouterr()
    assert main(["run", str(edited), "--out", str(copy), "-q"]) == 0
    out = capsys.readouterr().out
    assert "ranker.epochs: 20 → 5" in out and "reused (already trained)" in out
    assert (copy / "item_vectors.npy").read_bytes() == trained  # the towers were not retrained
    assert stages_status(copy)["rerank"] == "done"


def test_2_fresh_starts_over_and_redo_forces_a_stage(
    ranked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, run = ranked
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "stray.txt").write_text("from the old run")
    assert main(["run", str(pipeline), "--out", str(copy), "--fresh", "-q"]) == 0
    assert not (copy / "stray.txt").exists() and not list(tmp_path.glob(".run.replaced-*"))
    before = RunDir.open(copy).stage("evaluate")["updated"]
    capsys.readouterr()
    assert main(["run", str(pipeline), "--out", str(copy), "--redo", "evaluate", "-q"]) == 0
    assert "reused (already trained)" in capsys.readouterr().out
    assert RunDir.open(copy).stage("evaluate")["updated"] >= before


def test_3_same_seed_same_reranked_metrics_and_lists(ranked: tuple[Path, Path], tmp_path: Path) -> None:
    pipeline, run = ranked
    assert main(["run", str(pipeline), "--out", str(tmp_path / "again"), "-q"]) == 0
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (run, tmp_path / "again"))
    assert first["rerank"]["valid_after"]["metrics"] == second["rerank"]["valid_after"]["metrics"]
    assert first["test"]["metrics"] == second["test"]["metrics"]
    users = [f"u{i}" for i in range(20)]
    lists = [
        [[r.item for r in rows] for rows in Run.open(r, rerank="always").recommend(users, 10)]
        for r in (run, tmp_path / "again")
    ]
    assert lists[0] == lists[1]


def test_3_a_ranker_that_did_not_help_is_not_applied_unless_asked(
    ranked: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = ranked
    metrics = json.loads((run / "metrics.json").read_text())
    helped = metrics["rerank"]["helped"]
    assert metrics["rerank"]["applied"] == helped and metrics["rerank"]["mode"] == "auto"
    auto, never, always = (Run.open(run, rerank=mode) for mode in ("auto", "never", "always"))
    assert auto.recommender.stage.reranks == helped
    assert not never.recommender.stage.reranks and always.recommender.stage.reranks
    [rows] = never.recommend(["u1"], 5)
    assert all(r.ranker_score is None for r in rows)
    assert main(["recommend", str(run), "--user", "u1", "--rerank", "never"]) == 0
    assert "path: retriever" in capsys.readouterr().out


def test_4_a_damaged_or_deleted_artifact_is_repaired_by_run(
    ranked: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, run = ranked
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ranker = next((copy / "ranker").iterdir())
    ranker.write_bytes(ranker.read_bytes()[:100])
    assert main(["recommend", str(copy), "--user", "u1"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["run", str(pipeline), "--out", str(copy), "-q"]) == 0  # redoes rerank (and what follows)
    assert main(["recommend", str(copy), "--user", "u1"]) == 0
    shutil.rmtree(copy / "ranker")
    assert main(["evaluate", str(copy)]) == 2
    assert main(["run", str(pipeline), "--out", str(copy), "-q"]) == 0
    assert (copy / "ranker").is_dir() and main(["evaluate", str(copy)]) == 0
    assert RunDir.open(copy).verify() == []


def test_2_editing_what_the_ranker_learns_from_redoes_rerank_alone(ranked: tuple[Path, Path], tmp_path: Path) -> None:
    pipeline, run = ranked
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edited = pipeline.parent / "edited.yaml"
    edited.write_text(pipeline.read_text().replace("{bootstrap: 200}", "{bootstrap: 200, ranker_holdout: 2}"))
    trained = RunDir.open(copy).manifest["stages"]["train"]["updated"]
    assert json.loads((copy / "rerank.json").read_text())["fit"]["holdout"] == 3
    assert main(["run", str(edited), "--out", str(copy), "-q"]) == 0
    assert json.loads((copy / "rerank.json").read_text())["fit"]["holdout"] == 2
    assert RunDir.open(copy).manifest["stages"]["train"]["updated"] == trained  # the towers were reused


def test_2_a_parameter_added_by_an_upgrade_does_not_redo_finished_stages(
    ranked: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run made by a fusionrec without some parameter (simulated: the key dropped from the recorded inputs, the
    fingerprint of those older inputs) is still done; a recorded value that differs is not."""
    pipeline, run = ranked
    copy = tmp_path / "run"
    shutil.copytree(run, copy)

    def age(change: str) -> str:
        rundir = RunDir.open(copy)
        entry = rundir.manifest["stages"]["train"]
        train = entry["inputs"]["train"]
        if change == "older":
            del train["patience"]  # a parameter this "older" fusionrec did not have
        else:
            train["lr"] = 0.5  # a setting the run was really made with, other than the pipeline's
        entry["fingerprint"] = "0123456789abcdef"
        rundir.save()
        return str(entry["updated"])

    trained = age("older")
    assert main(["run", str(pipeline), "--out", str(copy), "-q"]) == 0
    assert RunDir.open(copy).manifest["stages"]["train"]["updated"] == trained  # reused, not retrained
    age("other value")
    assert main(["run", str(pipeline), "--out", str(copy), "-q"]) == 0
    entry = RunDir.open(copy).manifest["stages"]["train"]
    assert entry["updated"] != trained and entry["inputs"]["train"]["lr"] != 0.5  # retrained with the pipeline's


def test_5_one_writer_per_run_folder(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, train=FAST)
    target = tmp_path / "run"
    with writer_lock(target), pytest.raises(RunError, match=r"is being written by pid \d+ since \d\d:\d\d"):
        Pipeline.load(pipeline, get_registry()).run(target)
    assert not target.exists()
    held = FileLock(tmp_path / ".run.lock")
    held.acquire()
    try:
        assert main(["run", str(pipeline), "--out", str(target), "-q"]) == 2
    finally:
        held.release()
