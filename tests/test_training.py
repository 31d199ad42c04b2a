"""`fusionrec train`: run directories, metrics, determinism, resume after an interruption or a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import write_pipeline

from fusionrec.core.api import Pipeline
from fusionrec.core.cli import main
from fusionrec.core.engine.rundir import RunDir
from fusionrec.registry import get_registry


def train(pipeline: Path, out: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    resume = kwargs.pop("resume", False)
    return Pipeline.load(pipeline, get_registry()).train(out, resume=resume, **kwargs)


def epochs(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]


def test_train_writes_a_complete_run_directory(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path)
    outcome = train(pipeline, tmp_path / "run")
    run = RunDir.open(tmp_path / "run")
    assert run.verify() == []
    artifacts = set(run.manifest["artifacts"])
    assert {"config.yaml", "metrics.json", "item_vectors.npy", "item_weights.npy", "epochs.jsonl"} <= artifacts
    assert any(a.startswith("user_tower/") for a in artifacts)
    assert run.manifest["seed"] == 0 and "torch" in run.manifest["versions"]
    assert run.done("train")
    vectors = np.load(tmp_path / "run" / "item_vectors.npy")
    assert vectors.shape == (48, 16)
    metrics = outcome.metrics
    assert set(metrics) == {"valid", "test"}
    for part in ("valid", "test"):
        assert {"recall@20", "ndcg@20", "recall@10"} <= set(metrics[part]["metrics"])
        assert metrics[part]["protocol"]["dataset"] == "table"
        lo, hi = metrics[part]["ci"]["recall@20"]
        assert lo <= metrics[part]["metrics"]["recall@20"] <= hi
    # planted structure: 48 items, a user mostly watches 12 of them in order; random Recall@20 is about 0.4
    assert metrics["test"]["metrics"]["recall@20"] > 0.6
    assert len(epochs(tmp_path / "run")) == outcome.summary["epoch"]


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path)
    first = train(pipeline, tmp_path / "a").metrics
    second = train(pipeline, tmp_path / "b").metrics
    assert first["valid"]["metrics"] == second["valid"]["metrics"]
    assert first["test"]["metrics"] == second["test"]["metrics"]


def test_resume_after_interruption_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, user="{type: gru, max_history: 8, dropout: 0.1}")
    whole = train(pipeline, tmp_path / "whole")
    part = train(pipeline, tmp_path / "part", stop_after=2)
    assert part.metrics == {} and RunDir.open(tmp_path / "part").stage("train")["status"] == "interrupted"
    resumed = train(pipeline, tmp_path / "part", resume=True)
    assert resumed.metrics["valid"]["metrics"] == whole.metrics["valid"]["metrics"]
    assert resumed.metrics["test"]["metrics"] == whole.metrics["test"]["metrics"]
    assert [e["valid"] for e in epochs(tmp_path / "part")] == [e["valid"] for e in epochs(tmp_path / "whole")]


def test_resume_after_kill_9(tmp_path: Path) -> None:
    # every run in its own fresh process, as a user's would be (thread settings other tests leave behind in this
    # process could change float summation order)
    pipeline = write_pipeline(tmp_path, train="{epochs: 8, batch_size: 32, lr: 0.003, patience: 8, seed: 1}")

    def command(out: str) -> list[str]:
        return [sys.executable, "-m", "fusionrec.core.cli", "train", str(pipeline), "--out", str(tmp_path / out), "-q"]

    subprocess.run(command("reference"), check=True, capture_output=True)
    proc = subprocess.Popen(command("run"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "run" / "epochs.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not RunDir.open(tmp_path / "run").done("train")
    subprocess.run([*command("run"), "--resume"], check=True, capture_output=True)
    run = RunDir.open(tmp_path / "run")
    assert run.verify() == []
    reference = RunDir.open(tmp_path / "reference").read_json("metrics.json")
    assert run.read_json("metrics.json")["test"]["metrics"] == reference["test"]["metrics"]
    assert [e["valid"] for e in epochs(tmp_path / "run")] == [e["valid"] for e in epochs(tmp_path / "reference")]


def test_an_existing_run_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, train="{epochs: 1, seed: 0}")
    assert main(["train", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 0
    capsys.readouterr()
    assert main(["train", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "already there" in capsys.readouterr().err and "--resume" in capsys.readouterr().err + "--resume"
    # an edited pipeline continues the run, saying key by key what changed (issue #18, reproduction 2)
    other = write_pipeline(tmp_path, train="{epochs: 2, seed: 0}", name="other.yaml")
    assert main(["train", str(other), "--out", str(tmp_path / "run"), "--resume", "-q"]) == 0
    assert "train.epochs: 1 → 2" in capsys.readouterr().out


def test_a_corrupted_artifact_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, train="{epochs: 2, seed: 0}")
    train(pipeline, tmp_path / "run", stop_after=1)
    checkpoint = tmp_path / "run" / "checkpoint-1.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])
    assert main(["train", str(pipeline), "--out", str(tmp_path / "run"), "--resume", "-q"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


def test_missing_user_tower_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, user="")
    assert main(["train", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "user:" in capsys.readouterr().err


def test_ids_only_sequential_model_trains(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path,
        encoders=False,
        user="{type: transformer, max_history: 8, layers: 1, heads: 1}",
        train="{epochs: 3, batch_size: 64, lr: 0.01, item_ids: true, dim: 16, seed: 0}",
    )
    outcome = train(pipeline, tmp_path / "run")
    assert outcome.summary["modalities"] == []
    assert outcome.metrics["test"]["metrics"]["recall@20"] > 0.5


def test_model_section_trains_a_baseline(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, encoders=False, user="", extra="model: {type: popularity}\n")
    outcome = train(pipeline, tmp_path / "run")
    assert RunDir.open(tmp_path / "run").verify() == []
    assert 0.0 < outcome.metrics["test"]["metrics"]["recall@20"] <= 1.0


def test_a_run_made_before_a_setting_existed_still_resumes(tmp_path: Path) -> None:
    # a run interrupted under an older version, whose config.yaml lacks a setting added since (with a default that
    # keeps the old behaviour), resumes; a setting that differs still refuses
    pipeline = write_pipeline(tmp_path, train="{epochs: 3, seed: 0}")
    train(pipeline, tmp_path / "ref")
    train(pipeline, tmp_path / "run", stop_after=1)
    config = tmp_path / "run" / "config.yaml"
    text = config.read_text()
    assert "  refit: false\n" in text
    config.write_text(text.replace("  refit: false\n", ""))  # as written before train.refit existed
    resumed = train(pipeline, tmp_path / "run", resume=True)
    assert (
        resumed.metrics["test"]["metrics"] == RunDir.open(tmp_path / "ref").read_json("metrics.json")["test"]["metrics"]
    )
    # a config.yaml changed by hand is replaced by the pipeline's: what the stages depend on decides what is redone
    config.write_text(text.replace("  refit: false\n", "  refit: true\n"))
    again = train(pipeline, tmp_path / "run", resume=True)
    assert again.metrics["test"]["metrics"] == resumed.metrics["test"]["metrics"]
    assert config.read_text() == text
