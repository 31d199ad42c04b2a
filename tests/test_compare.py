"""`fusionrec compare`: two runs compared user by user with a paired bootstrap, from their per-user metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from train_fixtures import write_pipeline

from fusionrec.core.api import Pipeline
from fusionrec.core.api.compare import compare_runs, per_user
from fusionrec.core.cli import main
from fusionrec.core.engine.evaluation import paired_bootstrap
from fusionrec.core.engine.rundir import RunError
from fusionrec.registry import get_registry


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    out = {}
    for name, user in (("mean", "{type: mean}"), ("gru", "{type: gru, max_history: 8}")):
        pipeline = write_pipeline(
            root, user=user, train="{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}", name=f"{name}.yaml"
        )
        Pipeline.load(pipeline, get_registry()).train(root / name)
        out[name] = root / name
    return out


def test_per_user_metrics_average_to_the_reported_ones(runs: dict[str, Path]) -> None:
    metrics = json.loads((runs["mean"] / "metrics.json").read_text())
    for part in ("valid", "test"):
        frame = per_user(runs["mean"], part)
        assert frame.index.is_unique and len(frame) > 10
        for name, value in metrics[part]["metrics"].items():
            if name in frame.columns:
                assert frame[name].mean() == pytest.approx(value, abs=1e-9)


def test_compare_is_paired_and_agrees_with_the_two_runs(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = compare_runs(runs["mean"], runs["gru"], metrics=["ndcg@20"], samples=500)
    [row] = rows
    a = json.loads((runs["mean"] / "metrics.json").read_text())["test"]["metrics"]["ndcg@20"]
    b = json.loads((runs["gru"] / "metrics.json").read_text())["test"]["metrics"]["ndcg@20"]
    assert row["a"] == pytest.approx(a) and row["b"] == pytest.approx(b)
    assert row["difference_low"] <= row["difference"] <= row["difference_high"]
    assert row["ratio"] == pytest.approx(b / a)
    # a run against itself: no difference at all, and never better
    [same] = compare_runs(runs["mean"], runs["mean"], metrics=["ndcg@20"], samples=200)
    assert same["difference_low"] == same["difference_high"] == 0.0 and same["p_not_better"] == 1.0
    assert main(["compare", str(runs["mean"]), str(runs["gru"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["metric"] for r in printed] == ["recall@20", "ndcg@20"]


def test_a_small_consistent_gain_is_clearly_positive_when_paired() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = base + 0.05 + rng.normal(0, 0.01, 400)  # strongly correlated users, a small consistent gain
    result = paired_bootstrap(base, better, 1000, 0)
    assert result["difference_low"] > 0 and result["p_not_better"] == 0.0
    assert result["ratio_low"] > 1.0
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(base, better[:10], 100, 0)


def test_bad_comparisons_say_why(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RunError, match="no per-user 'mrr@5'"):
        compare_runs(runs["mean"], runs["gru"], metrics=["mrr@5"])
    assert main(["compare", str(runs["mean"]), str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    # a tampered per-user file is refused by the manifest's checksum
    target = runs["gru"] / "per_user.csv"
    original = target.read_text()
    frame = pd.read_csv(target, dtype={"user": str})
    frame.loc[frame.index[0], "ndcg@20"] = 1.0
    target.write_text(frame.to_csv(index=False))
    try:
        with pytest.raises(RunError, match=r"per_user\.csv"):
            compare_runs(runs["mean"], runs["gru"])
    finally:
        target.write_text(original)
