"""The built-in metrics: values by hand, against a slow pure-Python reference, and the metric contract."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionrec.core.errors import ConfigError
from fusionrec.core.metric import CorpusMetric, Metric
from fusionrec.registry import Register, Registry, get_registry, hookimpl
from fusionrec.registry.testing import check_component, make_registry

PER_USER = ("recall", "ndcg", "hit_rate", "mrr", "precision", "map")


def build(name: str, k: int, registry: Registry | None = None) -> Metric:
    metric = (registry or get_registry()).create("metric", name, {"k": k})
    assert isinstance(metric, Metric) and metric.k == k
    return metric


# ranks 1..5; k = 3 below
HITS = torch.tensor(
    [
        [True, False, True, False, False],  # hits at 1 and 3, 2 relevant
        [False, True, False, True, True],  # hit at 2 (and beyond k), 4 relevant
        [False, False, False, True, False],  # a hit only beyond k
        [False, False, True, False, False],  # hit at 3, 1 relevant
    ]
)
N_RELEVANT = torch.tensor([2, 4, 1, 1])
L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)
BY_HAND = {
    "recall": [2 / 2, 1 / 4, 0.0, 1.0],
    "precision": [2 / 3, 1 / 3, 0.0, 1 / 3],
    "hit_rate": [1.0, 1.0, 0.0, 1.0],
    "mrr": [1.0, 1 / 2, 0.0, 1 / 3],
    "ndcg": [
        (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3),  # IDCG over min(2, 3) = 2 hits
        (1 / L3) / (1 / L2 + 1 / L3 + 1 / L4),  # IDCG over min(4, 3) = 3 hits
        0.0,
        (1 / L4) / (1 / L2),
    ],
    "map": [(1 / 2) * (1 / 1 + 2 / 3), (1 / 3) * (1 / 2), 0.0, 1 * (1 / 3)],
}


@pytest.mark.parametrize("name", PER_USER)
def test_values_by_hand(name: str) -> None:
    values = build(name, 3).compute(HITS, N_RELEVANT)
    assert values.dtype == torch.float32 and values.shape == (4,)
    assert values.tolist() == pytest.approx(BY_HAND[name], abs=1e-6)


def test_recall_is_not_capped_at_k() -> None:
    """RecBole's convention: a user with more relevant items than K cannot reach recall 1."""
    hits = torch.ones(1, 2, dtype=torch.bool)
    assert build("recall", 2).compute(hits, torch.tensor([4])).tolist() == [0.5]
    assert build("ndcg", 2).compute(hits, torch.tensor([4])).tolist() == pytest.approx([1.0])
    assert build("map", 2).compute(hits, torch.tensor([4])).tolist() == pytest.approx([1.0])


def test_a_user_with_nothing_relevant_scores_zero() -> None:
    hits = torch.zeros(2, 3, dtype=torch.bool)
    for name in PER_USER:
        assert build(name, 3).compute(hits, torch.tensor([0, 0])).tolist() == [0.0, 0.0], name


def test_coverage_by_hand() -> None:
    top = torch.tensor([[0, 1, 2], [2, 3, -1], [9, -1, -1]])
    assert build("coverage", 1).corpus(top, 10) == pytest.approx(3 / 10)  # {0, 2, 9}
    assert build("coverage", 2).corpus(top, 10) == pytest.approx(5 / 10)  # {0, 1, 2, 3, 9}
    assert build("coverage", 3).corpus(top, 10) == pytest.approx(5 / 10)  # padding is not an item
    assert build("coverage", 3).corpus(top, 5) == pytest.approx(1.0)
    assert build("coverage", 2).corpus(torch.full((2, 2), -1), 10) == 0.0


def test_per_user_and_corpus_metrics_say_which_they_are() -> None:
    coverage = build("coverage", 5)
    assert isinstance(coverage, CorpusMetric) and coverage.per_user is False
    with pytest.raises(NotImplementedError, match="corpus metric"):
        coverage.compute(HITS, N_RELEVANT)
    recall = build("recall", 5)
    assert recall.per_user is True
    with pytest.raises(NotImplementedError, match="per-user metric"):
        recall.corpus(torch.zeros(1, 5, dtype=torch.long), 5)


@pytest.mark.parametrize("name", [*PER_USER, "coverage"])
def test_too_few_ranks_is_an_error(name: str) -> None:
    metric = build(name, 4)
    with pytest.raises(ValueError, match="K' >= 4"):
        if metric.per_user:
            metric.compute(HITS[:, :3], N_RELEVANT)
        else:
            metric.corpus(torch.zeros(2, 3, dtype=torch.long), 10)


def test_bad_k_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        build("recall", 0)


def test_mismatched_n_relevant_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_relevant must be"):
        build("recall", 2).compute(HITS, torch.tensor([1, 2]))


# ---------------------------------------------------------------------------------------------------------------
# against a slow reference, written from the formulas in docs/evaluation.md


def reference(name: str, row: list[bool], n_relevant: int, k: int) -> float:
    top = row[:k]
    if n_relevant == 0:
        return 0.0
    if name == "recall":
        return sum(top) / n_relevant
    if name == "precision":
        return sum(top) / k
    if name == "hit_rate":
        return 1.0 if any(top) else 0.0
    if name == "mrr":
        for rank, hit in enumerate(top, start=1):
            if hit:
                return 1 / rank
        return 0.0
    if name == "ndcg":
        dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(top, start=1) if hit)
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(n_relevant, k) + 1))
        return dcg / ideal
    if name == "map":
        found, total = 0, 0.0
        for rank, hit in enumerate(top, start=1):
            if hit:
                found += 1
                total += found / rank
        return total / min(n_relevant, k)
    raise AssertionError(name)


@st.composite
def rankings(draw: st.DrawFn) -> tuple[int, list[list[bool]], list[int]]:
    k = draw(st.integers(1, 8))
    columns = k + draw(st.integers(0, 4))
    users = draw(st.integers(1, 6))
    rows, relevant = [], []
    for _ in range(users):
        row = draw(st.lists(st.booleans(), min_size=columns, max_size=columns))
        n = draw(st.integers(sum(row), sum(row) + 6))  # never fewer relevant items than hits
        rows.append(row)
        relevant.append(n)
    return k, rows, relevant


@settings(max_examples=80, deadline=None)
@given(rankings())
def test_metrics_agree_with_the_reference(case: tuple[int, list[list[bool]], list[int]]) -> None:
    k, rows, relevant = case
    hits, n_relevant = torch.tensor(rows, dtype=torch.bool), torch.tensor(relevant)
    for name in PER_USER:
        values = build(name, k).compute(hits, n_relevant).tolist()
        expected = [reference(name, row, n, k) for row, n in zip(rows, relevant, strict=True)]
        assert values == pytest.approx(expected, abs=1e-5), name
        assert all(0.0 <= v <= 1.0 + 1e-6 for v in values), name


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 12),
    st.lists(st.lists(st.integers(-1, 11), min_size=6, max_size=6), min_size=1, max_size=8),
)
def test_coverage_agrees_with_the_reference(k: int, n_candidates: int, lists: list[list[int]]) -> None:
    lists = [[item if item < n_candidates else -1 for item in row] for row in lists]
    expected = len({item for row in lists for item in row[:k]} - {-1}) / n_candidates
    assert build("coverage", k).corpus(torch.tensor(lists), n_candidates) == pytest.approx(expected)


def test_metrics_run_on_the_device_of_the_hits() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    values = build("ndcg", 3).compute(HITS.cuda(), N_RELEVANT.cuda())
    assert values.device.type == "cuda"
    assert values.cpu().tolist() == pytest.approx(BY_HAND["ndcg"], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# the contract


@pytest.mark.parametrize("k", [1, 2, 20])
@pytest.mark.parametrize("name", [*PER_USER, "coverage"])
def test_built_ins_meet_the_contract_for_any_k(name: str, k: int) -> None:
    check_component("metric", name, context={"k": k})


class _Broken:
    """Metrics that each break one point of the contract."""

    class IgnoresK(Metric):
        def __init__(self, k: int) -> None:
            self.k = k

        def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
            return hits.float().sum(dim=1) / n_relevant.float()  # every column, not the first k

    class Unbounded(IgnoresK):
        def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
            if hits.shape[1] < self.k:
                raise ValueError("too few columns")
            return hits[:, : self.k].float().sum(dim=1)  # counts hits: not a recall

    class WrongShape(IgnoresK):
        def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
            return hits[:, : self.k].float().mean()

    @hookimpl
    def register_metrics(self, register: Register) -> None:
        register("bad.ignores_k", self.IgnoresK)
        register("bad.recall", self.Unbounded)
        register("bad.shape", self.WrongShape)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad.ignores_k", "columns beyond k=10 changed the values"),
        ("bad.recall", "values outside \\[0, 1\\]"),
        ("bad.shape", "compute\\(\\) returned shape \\(\\)"),
    ],
)
def test_the_contract_catches_broken_metrics(name: str, message: str) -> None:
    registry = make_registry(("bad", _Broken()))
    with pytest.raises(AssertionError, match=message):
        check_component("metric", name, registry=registry)


def test_the_plugin_module_stays_light() -> None:
    """`fusionrec plugins` imports the plugin module at start-up: it must not import torch itself."""
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "plugins" / "metrics" / "top_k.py"
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "torch" not in imported and "numpy" not in imported
