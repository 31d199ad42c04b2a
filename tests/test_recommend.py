"""`fusionrec run`, `recommend` and `evaluate` on a trained run: two-stage recommend, explanations, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from train_fixtures import write_pipeline

from fusionrec.core.api import Run
from fusionrec.core.cli import main
from fusionrec.registry import get_registry

PIPELINE_EXTRA = "retriever: {type: faiss, index: Flat, metric: ip}\nranker: {type: logistic, epochs: 20}\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recommend")
    pipeline = write_pipeline(folder, train="{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}", extra=PIPELINE_EXTRA)
    assert main(["run", str(pipeline), "--out", str(folder / "run"), "-q", "--user", "u1"]) == 0
    return folder / "run"


def test_run_writes_metrics_report_and_chart(run_dir: Path) -> None:
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run_dir / "report.md").read_text()
    assert "## Metrics" in report and "recall@20" in report and "User u1:" in report and "Reranking" in report
    # the per-item modality-weight histogram (issue 16): a collapse onto one modality shows here
    assert "## Modality weights" in report and "text mean 1.000" in report
    assert (run_dir / "weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["rerank"]["verdict"].startswith(("reranking helped:", "reranking did not help:"))
    assert "did" in metrics["rerank"]["verdict"] or "helped" in metrics["rerank"]["verdict"]


def test_recommend_excludes_seen_items_and_explains(run_dir: Path) -> None:
    recommender = Run.open(run_dir, get_registry(), rerank="always").recommender
    assert recommender.stage.retriever is not None and recommender.stage.ranker is not None
    [rows] = recommender.recommend(["u1"], k=10)
    assert len(rows) == 10 and [r.rank for r in rows] == list(range(1, 11))
    seen = set(recommender.data.interactions.query("user == @recommender.user_index('u1')")["item"])
    assert not seen & {r.item for r in rows}
    ranker_scores = [r.ranker_score for r in rows]
    assert ranker_scores == sorted(ranker_scores, reverse=True)  # type: ignore[type-var]
    for r in rows:
        assert set(r.weights) == {"text"} and abs(sum(r.weights.values()) - 1) < 1e-5
        assert r.retrieval_score is not None and "story" in r.title


def test_similar_items_exclude_the_item(run_dir: Path) -> None:
    recommender = Run.open(run_dir, get_registry(), rerank="always").recommender
    rows = recommender.similar_items("0", k=5)
    assert len(rows) == 5 and all(str(r.item_id) != "0" for r in rows)


def test_recommend_cli_json_and_csv(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(run_dir), "--user", "u2", "-k", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload[0]["user_id"] == "u2" and len(payload[0]["items"]) == 3
    target = tmp_path / "recs.csv"
    assert main(["recommend", str(run_dir), "--users", "all", "-k", "5", "--out", str(target)]) == 0
    rows = list(csv.DictReader(target.open()))
    assert set(rows[0]) == {"userId", "itemId", "rank"} and len(rows) == 80 * 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody"], "unknown user 'nobody'"),
        (["--user", "u1", "-k", "0"], "k must be a positive"),
        (["--similar", "99999"], "unknown item '99999'"),
        ([], "give --user ID"),
    ],
)
def test_recommend_bad_input(run_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", str(run_dir), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err + captured.out and "Traceback" not in captured.err


def test_k_larger_than_the_catalogue_is_capped_with_a_note(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue #18, 6: capped, not an error
    assert main(["recommend", str(run_dir), "--user", "u1", "-k", "500", "--json"]) == 0
    captured = capsys.readouterr()
    items = json.loads(captured.out)[0]["items"]
    assert 0 < len(items) < 500 and "larger than the catalogue" in captured.err


def test_evaluate_and_corruption(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    assert "recall@20" in json.loads(capsys.readouterr().out)["test"]["metrics"]
    assert main(["recommend", str(tmp_path / "nothing"), "--user", "u1"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in run_dir.rglob("*"):
        if file.is_file():
            (copy / file.relative_to(run_dir)).parent.mkdir(parents=True, exist_ok=True)
            (copy / file.relative_to(run_dir)).write_bytes(file.read_bytes())
    vectors = copy / "item_vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\0" * 8)
    assert main(["recommend", str(copy), "--user", "u1"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["evaluate", str(copy)]) == 2
    assert "item_vectors.npy: checksum mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("index", ["Flat", "HNSW32", "IVF256,Flat"])
def test_the_same_pipeline_runs_with_each_index(tmp_path: Path, index: str) -> None:
    from train_fixtures import write_catalogue

    write_catalogue(tmp_path / "data", users=60, items_per_genre=75)  # 300 items: enough to train IVF256
    pipeline = write_pipeline(
        tmp_path,
        train="{epochs: 1, batch_size: 128, seed: 0}",
        extra=f"retriever: {{type: faiss, index: '{index}', metric: ip}}\n",
    )
    assert main(["train", str(pipeline), "--out", str(tmp_path / "run"), "-q"]) == 0
    [rows] = Run.open(tmp_path / "run", get_registry()).recommender.recommend(["u0"], k=10)
    assert len(rows) == 10 and len({r.item for r in rows}) == 10
