"""The evaluation engine: masking, candidates, users, metrics against a brute-force ranking, bootstrap, errors."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import torch

from fusionrec.core.data import SplitData
from fusionrec.core.engine.evaluation import EvalResult, bootstrap_ci, evaluate, known_interactions, top_k
from fusionrec.core.errors import ConfigError, FusionrecError, UnknownComponentError
from fusionrec.registry import get_registry
from fusionrec.registry.data_contracts import toy_data

Score = Callable[[npt.NDArray[np.int64]], torch.Tensor]


def frame(pairs: list[tuple[int, int]], start: int = 0) -> pd.DataFrame:
    """Interaction rows for (user, item) pairs, with distinct index labels from ``start``."""
    users = [u for u, _ in pairs]
    items = [i for _, i in pairs]
    return pd.DataFrame(
        {
            "user": np.array(users, dtype=np.int64),
            "item": np.array(items, dtype=np.int64),
            "timestamp": np.arange(len(pairs), dtype=np.int64),
            "rating": np.ones(len(pairs)),
        },
        index=pd.RangeIndex(start, start + len(pairs)),
    )


def make_split(
    train: list[tuple[int, int]], valid: list[tuple[int, int]], test: list[tuple[int, int]], **kw
) -> SplitData:  # type: ignore[no-untyped-def]
    return SplitData(frame(train), frame(valid, 1000), frame(test, 2000), **kw)


def scorer(matrix: torch.Tensor) -> Score:
    return lambda users: matrix[torch.from_numpy(np.asarray(users))]


# 3 users, 6 items. Each user's scores rank items 0, 1, 2, 3, 4, 5 (user 0), 5 … 0 (user 1), 2, 0, 4, 1, 5, 3 (user 2)
N_ITEMS = 6
ORDER = {0: [0, 1, 2, 3, 4, 5], 1: [5, 4, 3, 2, 1, 0], 2: [2, 0, 4, 1, 5, 3]}
SCORES = torch.zeros(3, N_ITEMS)
for _user, _order in ORDER.items():
    SCORES[_user, _order] = torch.arange(N_ITEMS, 0, -1, dtype=torch.float32)
SPLIT = make_split(
    train=[(0, 0), (0, 1), (1, 5), (2, 2)],
    valid=[(0, 2), (1, 4)],
    test=[(0, 3), (0, 5), (1, 0), (2, 4)],
)


def test_known_interactions() -> None:
    assert known_interactions(SPLIT, "valid").equals(SPLIT.train)
    known = known_interactions(SPLIT, "test")
    assert list(known.columns) == list(SPLIT.train.columns)
    assert sorted(zip(known["user"], known["item"], strict=True)) == [(0, 0), (0, 1), (0, 2), (1, 4), (1, 5), (2, 2)]
    assert known.index.is_unique
    with pytest.raises(FusionrecError, match="part must be 'valid' or 'test'"):
        known_interactions(SPLIT, "train")  # type: ignore[arg-type]


def test_known_items_are_masked_and_never_counted() -> None:
    top = top_k(scorer(SCORES), np.array([0, 1, 2]), SPLIT, "test", 3, N_ITEMS)
    # user 0 knows 0, 1, 2 (train + valid): its list starts at 3; user 1 knows 5, 4; user 2 knows 2
    assert top.tolist() == [[3, 4, 5], [3, 2, 1], [0, 4, 1]]
    result = evaluate(scorer(SCORES), SPLIT, "test", ["recall@1", "recall@2", "hit_rate@1", "mrr@3"], N_ITEMS)
    assert result.users.tolist() == [0, 1, 2]
    # user 0: relevant {3, 5}, list 3, 4, 5; user 1: relevant {0}, list 3, 2, 1; user 2: relevant {4}, list 0, 4, 1
    assert result.per_user["recall@1"].tolist() == [0.5, 0.0, 0.0]
    assert result.per_user["recall@2"].tolist() == [0.5, 0.0, 1.0]
    assert result.per_user["hit_rate@1"].tolist() == [1.0, 0.0, 0.0]
    assert result.per_user["mrr@3"].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert result.metrics["recall@2"] == pytest.approx(0.5)
    assert result.protocol["masked"] == "train+valid" and result.protocol["n_users"] == 3


def test_validation_masks_training_items_only() -> None:
    top = top_k(scorer(SCORES), np.array([0, 1]), SPLIT, "valid", 2, N_ITEMS)
    assert top.tolist() == [[2, 3], [4, 3]]  # test items are not known when validating
    result = evaluate(scorer(SCORES), SPLIT, "valid", ["recall@1"], N_ITEMS)
    assert result.users.tolist() == [0, 1]  # user 2 has nothing in valid
    assert result.per_user["recall@1"].tolist() == [1.0, 1.0]
    assert result.protocol["masked"] == "train" and result.protocol["part"] == "valid"


def test_a_known_item_seen_again_in_the_part_is_not_relevant() -> None:
    """A repeated interaction (the item is in train and in test) can never be ranked, so it is not relevant."""
    split = make_split(train=[(0, 0), (1, 1)], valid=[], test=[(0, 0), (0, 3), (1, 1)])
    result = evaluate(scorer(SCORES[:2]), split, "test", ["recall@5", "precision@1"], N_ITEMS)
    assert result.users.tolist() == [0]  # user 1's only test item is known: nothing to rank for it
    assert result.protocol["skipped_users"] == 1
    assert result.per_user["recall@5"].tolist() == [1.0]  # 1 relevant item (3), found; item 0 is not counted


def test_candidates_restrict_the_ranking() -> None:
    split = make_split(
        train=[(0, 0), (1, 5)],
        valid=[(0, 1)],
        test=[(0, 4), (1, 3), (2, 0)],
        candidate_items=np.array([3, 4, 5]),
        valid_candidate_items=np.array([1, 2]),
    )
    top = top_k(scorer(SCORES), np.array([0, 1, 2]), split, "test", 4, N_ITEMS)
    assert top.tolist() == [[3, 4, 5, -1], [4, 3, -1, -1], [4, 5, 3, -1]]  # candidates only, padded
    result = evaluate(scorer(SCORES), split, "test", ["recall@1", "coverage@1", "coverage@3"], N_ITEMS)
    # user 2's test item 0 is not a candidate: nothing of theirs can be ranked
    assert result.users.tolist() == [0, 1] and result.protocol["skipped_users"] == 1
    assert result.protocol["candidates"] == 3
    assert result.per_user["recall@1"].tolist() == [0.0, 0.0]
    assert result.metrics["coverage@1"] == pytest.approx(2 / 3)  # {3, 4} of 3 candidates
    assert result.metrics["coverage@3"] == pytest.approx(1.0)
    assert "coverage@1" not in result.per_user
    valid = top_k(scorer(SCORES), np.array([0]), split, "valid", 3, N_ITEMS)
    assert valid.tolist() == [[1, 2, -1]]


def test_top_k_pads_when_fewer_items_can_be_ranked() -> None:
    top = top_k(scorer(SCORES), np.array([0, 0, 2]), SPLIT, "test", 8, N_ITEMS)
    assert top.shape == (3, 8) and top.dtype == np.int64
    assert top[0].tolist() == [3, 4, 5, -1, -1, -1, -1, -1]
    assert top[1].tolist() == top[0].tolist()  # users may repeat; order follows the given users
    assert top[2].tolist() == [0, 4, 1, 5, 3, -1, -1, -1]


def test_metrics_beyond_the_catalogue_size_still_work() -> None:
    result = evaluate(scorer(SCORES), SPLIT, "test", ["recall@50", "precision@50", "ndcg@50"], N_ITEMS)
    assert result.per_user["recall@50"].tolist() == [1.0, 1.0, 1.0]
    assert result.per_user["precision@50"].tolist() == pytest.approx([2 / 50, 1 / 50, 1 / 50])


def test_items_scored_minus_infinity_are_never_recommended() -> None:
    scores = SCORES.clone()
    scores[0, 3] = float("-inf")
    top = top_k(scorer(scores), np.array([0]), SPLIT, "test", 4, N_ITEMS)
    assert top.tolist() == [[4, 5, -1, -1]]


def test_a_user_subset() -> None:
    result = evaluate(scorer(SCORES), SPLIT, "test", ["recall@2"], N_ITEMS, users=np.array([2, 0, 7]))
    assert result.users.tolist() == [0, 2]
    assert result.per_user["recall@2"].tolist() == [0.5, 1.0]


# ---------------------------------------------------------------------------------------------------------------
# against a brute-force ranking


def random_case(seed: int, n_users: int = 30, n_items: int = 40) -> tuple[SplitData, torch.Tensor, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    parts: list[list[tuple[int, int]]] = [[], [], []]
    for user in range(n_users):
        items = rng.permutation(n_items)[: rng.integers(2, 15)]
        for item in items:
            parts[int(rng.choice(3, p=[0.6, 0.2, 0.2]))].append((user, int(item)))
    candidates = np.sort(rng.permutation(n_items)[:25]) if seed % 2 else None
    split = make_split(*parts, candidate_items=candidates)
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)).astype(np.float32))  # no ties
    return split, scores, candidates


def brute_force(
    split: SplitData, scores: torch.Tensor, candidates: np.ndarray | None, k: int
) -> dict[int, dict[str, float]]:
    known = known_interactions(split, "test")
    out: dict[int, dict[str, float]] = {}
    for user in sorted(set(split.test["user"])):
        seen = set(known.loc[known["user"] == user, "item"])
        allowed = [i for i in range(scores.shape[1]) if i not in seen and (candidates is None or i in set(candidates))]
        relevant = set(split.test.loc[split.test["user"] == user, "item"]) & set(allowed)
        if not relevant:
            continue
        ranked = sorted(allowed, key=lambda i: -float(scores[user, i]))[:k]
        hits = [i in relevant for i in ranked]
        first = next((rank for rank, hit in enumerate(hits, 1) if hit), None)
        dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(hits, 1) if hit)
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
        out[int(user)] = {
            f"recall@{k}": sum(hits) / len(relevant),
            f"ndcg@{k}": dcg / ideal,
            f"mrr@{k}": 1 / first if first else 0.0,
            f"hit_rate@{k}": float(any(hits)),
            f"precision@{k}": sum(hits) / k,
        }
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_metrics_match_a_brute_force_ranking(seed: int) -> None:
    split, scores, candidates = random_case(seed)
    k = 5
    expected = brute_force(split, scores, candidates, k)
    names = [f"{name}@{k}" for name in ("recall", "ndcg", "mrr", "hit_rate", "precision")]
    result = evaluate(scorer(scores), split, "test", names, scores.shape[1], batch_size=7)
    assert result.users.tolist() == sorted(expected)
    for name in names:
        want = [expected[u][name] for u in result.users.tolist()]
        assert result.per_user[name].tolist() == pytest.approx(want, abs=1e-6), name
        assert result.metrics[name] == pytest.approx(float(np.mean(want)), abs=1e-6)


def test_batch_size_does_not_change_anything() -> None:
    split, scores, _ = random_case(5)
    names = ["recall@10", "ndcg@10", "map@10", "coverage@10"]
    one = evaluate(scorer(scores), split, "test", names, scores.shape[1], batch_size=1)
    all_ = evaluate(scorer(scores), split, "test", names, scores.shape[1], batch_size=1024)
    assert one.metrics == all_.metrics
    top = top_k(scorer(scores), np.arange(30), split, "test", 10, scores.shape[1], batch_size=4)
    assert np.array_equal(top, top_k(scorer(scores), np.arange(30), split, "test", 10, scores.shape[1]))


def test_the_cold_items_split_ranks_among_its_cold_items() -> None:
    registry = get_registry()
    data = toy_data(n_users=12, n_items=15)
    split = registry.create("split", "cold_items", test=0.3, valid=0.2, seed=1).split(data)
    scores = torch.randn(data.n_users, data.n_items, generator=torch.Generator().manual_seed(0))
    users = np.unique(split.test["user"].to_numpy())
    top = top_k(scorer(scores), users, split, "test", 15, data.n_items)
    assert set(top[top >= 0].tolist()) <= set(split.candidate_items.tolist())  # type: ignore[union-attr]
    result = evaluate(scorer(scores), split, "test", ["recall@3", "coverage@3"], data.n_items)
    assert result.protocol["candidates"] == len(np.unique(split.candidate_items))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# bootstrap, results, protocol


def test_bootstrap_intervals_contain_the_mean_and_repeat_per_seed() -> None:
    split, scores, _ = random_case(6, n_users=60)
    names = ["recall@10", "ndcg@10", "coverage@10"]
    result = evaluate(scorer(scores), split, "test", names, 40, bootstrap=500, seed=3)
    assert set(result.ci) == {"recall@10", "ndcg@10"}  # a corpus metric has no per-user values to resample
    for name, (low, high) in result.ci.items():
        assert low <= result.metrics[name] <= high and low < high
    again = evaluate(scorer(scores), split, "test", names, 40, bootstrap=500, seed=3)
    assert again.ci == result.ci
    other = evaluate(scorer(scores), split, "test", names, 40, bootstrap=500, seed=4)
    assert other.ci != result.ci and other.metrics == result.metrics
    assert evaluate(scorer(scores), split, "test", names, 40).ci == {}


def test_bootstrap_of_constant_values_is_a_point() -> None:
    ci = bootstrap_ci({"m": np.full(20, 0.25)}, 200, seed=0)
    assert ci["m"] == pytest.approx((0.25, 0.25))


def test_bootstrap_matches_plain_resampling() -> None:
    """The multinomial draw is resampling users with replacement: intervals agree with a plain loop."""
    values = np.random.default_rng(1).random(200)
    low, high = bootstrap_ci({"m": values}, 4000, seed=0)["m"]
    rng = np.random.default_rng(99)
    means = [values[rng.integers(0, 200, 200)].mean() for _ in range(4000)]
    assert low == pytest.approx(np.percentile(means, 2.5), abs=0.01)
    assert high == pytest.approx(np.percentile(means, 97.5), abs=0.01)


def test_results_serialise_and_state_their_protocol() -> None:
    result = evaluate(
        scorer(SCORES),
        SPLIT,
        "test",
        ["recall@2", "ndcg@1", "recall@2"],
        N_ITEMS,
        bootstrap=50,
        protocol={"dataset": "toy", "split": "temporal"},
    )
    assert isinstance(result, EvalResult)
    assert list(result.metrics) == ["recall@2", "ndcg@1"]  # duplicates measured once, order kept
    assert result.protocol == {
        "part": "test",
        "n_users": 3,
        "skipped_users": 0,
        "masked": "train+valid",
        "candidates": "all items",
        "n_items": N_ITEMS,
        "k": [1, 2],
        "metrics": ["recall@2", "ndcg@1"],
        "bootstrap": 50,
        "seed": 0,
        "dataset": "toy",
        "split": "temporal",
    }
    data = json.loads(json.dumps(result.to_dict()))
    assert data["metrics"] == result.metrics and data["part"] == "test"
    assert data["ci"]["recall@2"] == list(result.ci["recall@2"])
    assert data["per_user"]["users"] == [0, 1, 2] and data["per_user"]["recall@2"] == [0.5, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------------------------
# bad input


def test_an_unknown_metric_names_the_closest() -> None:
    with pytest.raises(
        UnknownComponentError, match=re.escape("evaluate.metrics[1]: unknown metric 'recal'. Did you mean 'recall'")
    ):
        evaluate(scorer(SCORES), SPLIT, "test", ["ndcg@5", "recal@20"], N_ITEMS)


def test_a_malformed_metric_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("metrics are written name@K (e.g. recall@20), got 'recall'")):
        evaluate(scorer(SCORES), SPLIT, "test", ["recall"], N_ITEMS)
    with pytest.raises(FusionrecError, match="no metric to compute"):
        evaluate(scorer(SCORES), SPLIT, "test", [], N_ITEMS)


@pytest.mark.parametrize(
    ("score", "message"),
    [
        (
            lambda users: SCORES[:, :4],
            r"returned shape \(3, 4\) for 3 users; expected \(len\(users\), n_items\) = \(3, 6\)",
        ),
        (lambda users: SCORES[:1], r"returned shape \(1, 6\) for 3 users"),
        (lambda users: SCORES.tolist(), "returned a list; it must return a torch.Tensor"),
        (lambda users: torch.full((len(users), N_ITEMS), float("nan")), "returned NaN scores \\(first for user 0\\)"),
    ],
    ids=["items", "users", "type", "nan"],
)
def test_a_bad_score_function_is_a_clear_error(score: Score, message: str) -> None:
    with pytest.raises(FusionrecError, match=message):
        evaluate(score, SPLIT, "test", ["recall@2"], N_ITEMS)


def test_numpy_and_integer_scores_are_accepted() -> None:
    as_numpy = evaluate(lambda users: SCORES[users].numpy(), SPLIT, "test", ["recall@2"], N_ITEMS)  # type: ignore[arg-type,return-value]
    as_int = evaluate(lambda users: SCORES[users].to(torch.int64), SPLIT, "test", ["recall@2"], N_ITEMS)
    assert as_numpy.metrics == as_int.metrics == {"recall@2": pytest.approx(0.5)}


def test_the_score_tensor_is_not_modified() -> None:
    scores = SCORES.clone()
    shared = scores[0].expand(3, N_ITEMS)  # a view, as a popularity model might return
    evaluate(lambda users: shared, SPLIT, "test", ["recall@2"], N_ITEMS)
    assert torch.equal(scores, SCORES)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: evaluate(scorer(SCORES), SPLIT, "train", ["recall@1"], N_ITEMS), "part must be 'valid' or 'test'"),  # type: ignore[arg-type]
        (lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], 0), "n_items must be a positive integer"),
        (lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], 5), "item id 5 is outside the internal ids"),
        (lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], N_ITEMS, batch_size=0), "batch_size must be"),
        (lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], N_ITEMS, bootstrap=-1), "bootstrap must be"),
        (lambda: evaluate(scorer(SCORES), SPLIT, "test", "recall@1", N_ITEMS), "must be a list of names"),
        (
            lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], N_ITEMS, protocol={"part": "x"}),
            r"protocol entries \['part'\] are filled in by evaluate\(\)",
        ),
        (
            lambda: evaluate(scorer(SCORES), SPLIT, "test", ["recall@1"], N_ITEMS, users=np.array([9])),
            "no user to evaluate on test",
        ),
        (
            lambda: evaluate(
                scorer(SCORES), make_split([], [], [], candidate_items=np.array([7])), "test", ["recall@1"], N_ITEMS
            ),
            "split.candidate_items: item id 7 is outside",
        ),
        (lambda: top_k(scorer(SCORES), np.array([0]), SPLIT, "test", 0, N_ITEMS), "k must be a positive integer"),
    ],
    ids=["part", "n_items", "item-range", "batch", "bootstrap", "string", "protocol", "no-user", "candidates", "k"],
)
def test_bad_arguments_are_clear_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(FusionrecError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------------------
# speed and devices


def test_a_movielens_sized_evaluation_is_fast() -> None:
    """610 users × 9,742 items (movielens-small), a score tensor at hand: well under a second."""
    rng = np.random.default_rng(0)
    n_users, n_items = 610, 9742

    def part(n: int, start: int) -> pd.DataFrame:
        rows = frame(list(zip(rng.integers(0, n_users, n).tolist(), rng.integers(0, n_items, n).tolist(), strict=True)))
        return rows.set_axis(pd.RangeIndex(start, start + n))

    split = SplitData(part(81_200, 0), part(9_818, 100_000), part(9_818, 200_000))
    scores = torch.randn(n_users, n_items, generator=torch.Generator().manual_seed(0))
    names = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit_rate@20", "mrr@20", "precision@20", "map@20"]
    evaluate(lambda users: scores, split, "test", names, n_items)  # warm-up: lazy imports
    started = time.perf_counter()
    result = evaluate(lambda users: scores[users], split, "test", [*names, "coverage@20"], n_items, bootstrap=1000)
    seconds = time.perf_counter() - started
    assert result.protocol["n_users"] > 600
    assert seconds < 2.0, f"evaluation took {seconds:.2f} s"  # 0.3-0.5 s measured on a busy 2-core machine


@pytest.mark.gpu
def test_scores_on_the_gpu_give_the_same_results() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    split, scores, _ = random_case(1)
    names = ["recall@5", "ndcg@5", "coverage@5"]
    cpu = evaluate(scorer(scores), split, "test", names, 40)
    gpu = evaluate(scorer(scores.cuda()), split, "test", names, 40)
    assert gpu.metrics == pytest.approx(cpu.metrics)


def test_pipelines_validate_the_built_in_metric_names() -> None:
    from fusionrec.core.assembly.config import EvaluateConfig, parse_pipeline

    spec = parse_pipeline("fusionrec: 1\nevaluate: {}\n", registry=get_registry())  # the defaults are checked too
    assert spec.evaluate == EvaluateConfig()
    names = [f"{name}@20" for name in ("recall", "ndcg", "hit_rate", "mrr", "precision", "map", "coverage")]
    spec = parse_pipeline(f"fusionrec: 1\nevaluate: {{metrics: [{', '.join(names)}]}}\n", registry=get_registry())
    assert spec.evaluate is not None and list(spec.evaluate.metrics) == names
    with pytest.raises(UnknownComponentError, match=re.escape("unknown metric 'ndgc'. Did you mean 'ndcg'?")):
        parse_pipeline("fusionrec: 1\nevaluate: {metrics: [ndgc@10]}\n", registry=get_registry())
