"""The one retrieve-then-rerank path (core/engine/two_stage.py): evaluation reports the served path beside the exact
one, and recommend, session recommendations and similar items go through the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import write_pipeline

from fusionrec.core.api import Pipeline, Run
from fusionrec.core.engine.two_stage import Seen, masked_top_k
from fusionrec.registry import get_registry

FAST = "{epochs: 2, batch_size: 64, lr: 0.01, seed: 0}"


def test_masked_top_k_masks_seen_items_and_pads() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])
    values, items = masked_top_k(scores.clone(), Seen(np.array([0, 1, 1, 1]), np.array([1, 0, 2, 3])), 3)
    assert items.tolist() == [[2, 3, 0], [1, -1, -1]]
    assert torch.isneginf(values[1, 1:]).all()


def test_seen_round_trips_between_forms() -> None:
    seen = Seen.of_lists([[3, 1], [], [2]])
    assert [list(x) for x in seen.lists(3)] == [[3, 1], [], [2]]
    blocked = seen.plus(np.array([0]), 3)
    assert [sorted(x) for x in blocked.lists(3)] == [[0, 1, 3], [0], [0, 2]]


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("exact")
    pipeline = write_pipeline(folder, train=FAST, extra="retriever: {type: exact}\n")
    return Pipeline.load(pipeline, get_registry()).train(folder / "run")


def test_with_the_exact_retriever_served_and_exact_rows_are_equal(exact_run: Run) -> None:
    metrics = exact_run.metrics
    assert metrics["exact"]["test"]["metrics"] == metrics["test"]["metrics"]
    assert metrics["index"]["recall@20 vs exact"] == 1.0
    assert metrics["test"]["protocol"]["path"] == "retriever 'ExactRetriever'"
    assert metrics["exact"]["test"]["protocol"]["path"] == "retriever 'ExactRetriever'"


def test_recommend_history_reads_the_session(exact_run: Run) -> None:
    ids = [str(i) for i in exact_run.recommender.data.item_ids]
    first = exact_run.recommend_history(ids[:3], k=5)
    second = exact_run.recommend_history(ids[-3:], k=5)
    assert [r.item_id for r in first] != [r.item_id for r in second]
    assert not {str(r.item_id) for r in first} & set(ids[:3])  # the session's items are not recommended
    excluded = exact_run.recommend_history(ids[:3], k=5, exclude=[str(first[0].item_id)])
    assert str(first[0].item_id) not in {str(r.item_id) for r in excluded}


def test_recommendations_are_the_evaluated_lists(exact_run: Run, tmp_path: Path) -> None:
    """The lists `recommend` serves come from the same TwoStage the metrics measured (here, an exact retriever)."""
    recommender = exact_run.recommender
    [rows] = recommender.recommend(["u3"], k=10)
    user = recommender.user_index("u3")
    vector = recommender.stage.query_vectors(np.array([user]), recommender.histories)
    seen = recommender.histories.items[recommender.histories.offsets[user] : recommender.histories.offsets[user + 1]]
    assert recommender.stage.retriever is not None and not recommender.stage.reranks
    n = min(recommender.stage.candidates, recommender.data.n_items)  # what the stage retrieves before cutting to k
    found = recommender.stage.retriever.search(vector.numpy(), n, exclude=[seen.numpy()])
    assert [r.item for r in rows] == found.ids[0, :10].tolist()


def test_a_pipeline_with_the_milvus_retriever_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("pymilvus")
    pipeline = write_pipeline(tmp_path, train=FAST, extra="retriever: {type: milvus, index: FLAT}\n")
    run = Pipeline.load(pipeline, get_registry()).run(tmp_path / "run")
    assert run.metrics["test"]["protocol"]["path"].startswith("retriever 'Milvus")
    assert run.metrics["index"]["recall@20 vs exact"] > 0.9
    reopened = Run.open(tmp_path / "run")
    [rows] = reopened.recommend(["u1"], k=5)
    assert len(rows) == 5 and (tmp_path / "run" / "report.md").exists()


def test_a_baseline_run_is_served_through_the_same_path(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, encoders=False, user="", extra="model: {type: popularity}\n")
    Pipeline.load(pipeline, get_registry()).train(tmp_path / "run")
    run = Run.open(tmp_path / "run")
    [rows] = run.recommend(["u1"], k=5)
    assert len(rows) == 5 and all(r.ranker_score is None for r in rows)
    assert run.path_description == "model scores over every item"
    seen = set(run.recommender.data.interactions.query("user == @run.recommender.user_index('u1')")["item"])
    assert not seen & {r.item for r in rows}
