"""`fusionrec recommend --as-of test`: the lists evaluation scored, re-scored by an independent script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixtures import write_pipeline

from fusionrec.core import cli

SCORER = Path(__file__).resolve().parents[1] / "examples" / "score_recs.py"


def score(split: Path, recs: Path) -> tuple[float, float]:
    """Recall@20 and NDCG@20 of ``recs`` by examples/score_recs.py, which imports nothing of fusionrec."""
    line = subprocess.run(
        [sys.executable, str(SCORER), str(split), str(recs), "20"], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(line[line.index("recall@20") + 1]), float(line[line.index("ndcg@20") + 1])


@pytest.mark.parametrize("ranker", ["", "ranker: {type: logistic, epochs: 5}\n"], ids=["retrieval", "reranked"])
def test_recommend_as_of_test_reproduces_the_evaluated_metrics(tmp_path: Path, ranker: str) -> None:
    """Also with a ranker whose features read popularity and recency: at the test cutoff they come from train +
    valid, as in evaluation, not from every interaction the run's data holds."""
    extra = "retriever: {type: faiss, index: HNSW32, metric: ip}\n" + ranker
    pipeline = write_pipeline(tmp_path, train="{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}", extra=extra)
    run, split = tmp_path / "run", tmp_path / "split"
    assert cli.main(["train", str(pipeline), "--out", str(run), "--rerank", "always"]) == 0
    assert cli.main(["data", "split", str(pipeline), "--out", str(split)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert ("reranked" in metrics["test"]["protocol"]["path"]) == bool(ranker)
    for flags, measured in (([], metrics["test"]), (["--exact"], metrics["exact"]["test"])):
        recs = tmp_path / f"recs{len(flags)}.csv"
        args = ["recommend", str(run), "--as-of", "test", "--users", "all", "-k", "20", "--out", str(recs), *flags]
        args += ["--rerank", "always"]
        assert cli.main(args) == 0
        recall, ndcg = score(split, recs)
        assert recall > 0
        assert (recall, ndcg) == (round(measured["metrics"]["recall@20"], 4), round(measured["metrics"]["ndcg@20"], 4))
    # without --as-of every interaction, test included, is history and excluded: nothing left to find
    assert cli.main(["recommend", str(run), "--users", "all", "-k", "20", "--out", str(tmp_path / "now.csv")]) == 0
    assert score(split, tmp_path / "now.csv") == (0.0, 0.0)
    # ids as in the data; --exact alone is a usage error
    assert (tmp_path / "recs0.csv").read_text().splitlines()[1].startswith("u")
    assert cli.main(["recommend", str(run), "--users", "all", "--exact", "--out", str(tmp_path / "x.csv")]) == 2
