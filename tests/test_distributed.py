"""Distributed two-tower training under ``python -m torch.distributed.run`` with gloo on the CPU (issue 15).

Each launch starts fresh processes, as a user's would. The 2-process runs use the same global batch size and seed
as the 1-process run; with the ``mean`` user tower (no dropout) and the sampled softmax over all-gathered vectors,
the two follow the same trajectory up to float summation order, so validation Recall@20 must agree within
``TOLERANCE``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_fixtures import write_pipeline

from fusionrec.core.engine import distributed
from fusionrec.core.engine.rundir import RunDir

TOLERANCE = 0.02
"""Largest accepted |Recall@20 (2 processes) − Recall@20 (1 process)| on validation (absolute)."""
WORKER = Path(__file__).with_name("ddp_loss_worker.py")
TRAIN = "{epochs: 5, batch_size: 64, lr: 0.01, patience: 10, seed: 0, device: cpu}"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def train_command(pipeline: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "fusionrec.core.cli", "train", str(pipeline), "--out", str(out), "-q", *extra]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def valid_recall(run_dir: Path) -> float:
    return float(RunDir.open(run_dir).read_json("metrics.json")["valid"]["metrics"]["recall@20"])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pipeline(tmp_path_factory.mktemp("ddp"), train=TRAIN)


@pytest.fixture(scope="module")
def two_process_run(pipeline: Path) -> Path:
    out = pipeline.parent / "runs" / "two"
    run(torchrun(*train_command(pipeline, out)))
    return out


@pytest.mark.parametrize("loss", ["sampled_softmax", "softmax", "sampled_softmax+basket"])
def test_a_batch_split_over_two_ranks_has_the_whole_batch_loss_and_gradients(tmp_path: Path, loss: str) -> None:
    run([sys.executable, str(WORKER), loss, str(tmp_path / "one")])
    run(torchrun(str(WORKER), loss, str(tmp_path / "two")))
    whole = torch.load(tmp_path / "one" / "rank-0.pt", weights_only=True)
    assert max(float(g.abs().max()) for g in whole["grads"].values()) > 1e-4  # a real gradient to compare
    for rank in (0, 1):
        split = torch.load(tmp_path / "two" / f"rank-{rank}.pt", weights_only=True)
        assert torch.allclose(split["loss"], whole["loss"], atol=1e-6)
        assert split["grads"].keys() == whole["grads"].keys()
        for name, grad in whole["grads"].items():
            assert torch.allclose(split["grads"][name], grad, atol=1e-5), name


def test_two_processes_train_one_run_directory_like_one_process(pipeline: Path, two_process_run: Path) -> None:
    one = pipeline.parent / "runs" / "one"
    run([sys.executable, *train_command(pipeline, one)])
    # rank 1 wrote nothing: the runs folder holds the two run directories and rank 0's writer lock files
    assert sorted(p.name for p in (pipeline.parent / "runs").iterdir() if not p.name.startswith(".")) == ["one", "two"]
    assert RunDir.open(two_process_run).verify() == []
    log = [json.loads(line) for line in (two_process_run / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5]
    assert abs(valid_recall(two_process_run) - valid_recall(one)) <= TOLERANCE


def test_killing_every_rank_and_resuming_ends_like_an_uninterrupted_run(pipeline: Path, two_process_run: Path) -> None:
    out = pipeline.parent / "runs" / "killed"
    launch = subprocess.Popen(
        torchrun(*train_command(pipeline, out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
        start_new_session=True,
    )  # fmt: skip
    log = out / "epochs.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and launch.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            time.sleep(0.25)  # into the third epoch (about half a second each here)
            os.killpg(launch.pid, signal.SIGKILL)  # torchrun and both ranks, kill -9
            break
        time.sleep(0.02)
    launch.wait()
    assert launch.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not RunDir.open(out).done("train")
    run(torchrun(*train_command(pipeline, out, "--resume")))
    resumed, reference = RunDir.open(out), RunDir.open(two_process_run)
    assert resumed.verify() == []
    assert (
        resumed.read_json("metrics.json")["valid"]["metrics"] == reference.read_json("metrics.json")["valid"]["metrics"]
    )
    assert (
        resumed.read_json("metrics.json")["test"]["metrics"] == reference.read_json("metrics.json")["test"]["metrics"]
    )


def test_a_baseline_under_torchrun_is_a_clear_error(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, user="", encoders=False, extra="model: {type: popularity}\n")
    done = subprocess.run(
        torchrun(*train_command(pipeline, tmp_path / "out")), capture_output=True, text=True, env=ENV, timeout=300
    )
    assert done.returncode != 0
    assert "model 'popularity' trains in one process, but WORLD_SIZE=2" in done.stderr
    assert not (tmp_path / "out").exists()


def test_world_size_and_global_batches() -> None:
    assert distributed.world_size({}) == 1
    assert distributed.world_size({"WORLD_SIZE": "4"}) == 4
    with pytest.raises(distributed.FusionrecError, match="WORLD_SIZE='x'"):
        distributed.world_size({"WORLD_SIZE": "x"})
    with pytest.raises(distributed.FusionrecError, match="RANK, LOCAL_RANK"):
        distributed.start("cpu", {"WORLD_SIZE": "2"})
    assert distributed.start("cpu", {}) is None
    # a last global batch smaller than the number of ranks joins the one before it
    assert distributed.split_batches(10, 4, 2) == [(0, 4), (4, 8), (8, 10)]
    assert distributed.split_batches(9, 4, 2) == [(0, 4), (4, 9)]
