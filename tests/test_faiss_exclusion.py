"""Seen-item exclusion in the ``faiss`` retriever: a per-query IDSelector on the CPU, over-fetching otherwise.

Every test compares the selector path with the over-fetch path it replaced (forced with ``_selector = False``):
both must return the same items with the same scores.
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np
import pytest

from fusionrec.plugins.retrievers.faiss_impl import FaissRetriever
from fusionrec.registry import get_registry

N, DIM, K = 2000, 16, 10
ABSENT = 10**12
"""An id no index holds: excluding it changes nothing, but sends the row through the selector path."""


def clustered(n: int, seed: int, centres: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).standard_normal((centres, DIM)).astype(np.float32) * 4
    return (means[rng.integers(0, centres, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


DATA = clustered(N, seed=1)
IDS = np.arange(N, dtype=np.int64) * 5 + 77
QUERIES = clustered(12, seed=2)


def build(index: str = "Flat", search: str = "", metric: str = "l2", **params: Any) -> FaissRetriever:
    retriever = get_registry().create("retriever", "faiss", index=index, search=search, metric=metric, **params)
    assert isinstance(retriever, FaissRetriever)
    retriever.build(DATA, IDS)
    return retriever


def overfetched(retriever: FaissRetriever, exclude: list[np.ndarray], k: int = K) -> Any:
    """The same search through the over-fetch path (what the retriever did before the selector path)."""
    saved = retriever._selector
    retriever._selector = False
    try:
        return retriever.search(QUERIES, k, exclude=exclude)
    finally:
        retriever._selector = saved


def exclusions(retriever: FaissRetriever) -> list[np.ndarray]:
    """Per query: nothing, a few of its own top items, items from anywhere, ids not in the index, duplicates, and
    rows longer than the catalogue minus k (fewer than k items left)."""
    top = retriever.search(QUERIES, 60).ids
    rng = np.random.default_rng(5)
    rows = [
        np.zeros(0, dtype=np.int64),
        top[1, :3],
        top[2, ::2],
        rng.choice(IDS, 400, replace=False),
        np.concatenate([top[4, :20], rng.choice(IDS, 200, replace=False)]),
        np.array([ABSENT, -3, ABSENT], dtype=np.int64),
        np.concatenate([top[6, :5], top[6, :5]]),  # duplicates
        IDS[: N - K + 4],  # longer than the catalogue minus k: k - 4 items left
        np.setdiff1d(IDS, rng.choice(IDS, 3, replace=False)),  # only 3 items left
        IDS,  # nothing left
        np.zeros(0, dtype=np.int64),
        top[11, :50],
    ]
    return [np.asarray(row, dtype=np.int64) for row in rows]


INDEXES = [
    ("Flat", ""),
    ("SQ8", ""),
    ("HNSW16", "efSearch=32"),
    ("HNSW32", "efSearch=16"),
    ("IVF16,Flat", "nprobe=4"),
    ("IVF16,PQ4np", "nprobe=16"),
    ("IVF16,SQ8", "nprobe=4"),
    ("OPQ4,IVF16,PQ4np", "nprobe=8"),
]


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize(("index", "search"), INDEXES, ids=[i for i, _ in INDEXES])
def test_the_selector_path_returns_what_over_fetching_returned(index: str, search: str, metric: str) -> None:
    retriever = build(index, search, metric)
    exclude = exclusions(retriever)
    found = retriever.search(QUERIES, K, exclude=exclude)
    assert retriever.exclusion_path == "selector"
    before = overfetched(retriever, exclude)
    np.testing.assert_array_equal(found.ids, before.ids)
    np.testing.assert_allclose(found.scores, before.scores, rtol=1e-5, atol=1e-5)
    for row, banned in enumerate(exclude):
        assert not np.isin(found.ids[row], banned).any(), f"row {row} got an excluded id"
    # padding where exclusions leave fewer than k items: -1 ids and -inf scores after the results
    assert (found.ids[9] == -1).all() and np.isneginf(found.scores[9]).all()
    if index == "Flat":  # exact: the rows with k - 4 and with 3 items left hold exactly those items
        for row in (7, 8):
            left = np.setdiff1d(IDS, exclude[row])
            assert set(found.ids[row, : len(left)].tolist()) == set(left.tolist())
            assert (found.ids[row, len(left) :] == -1).all()


def test_k_larger_than_the_index_pads_on_both_paths() -> None:
    retriever = build()
    exclude = [IDS[: N - 5]] * len(QUERIES)
    found = retriever.search(QUERIES, N + 50, exclude=exclude)
    before = overfetched(retriever, exclude, k=N + 50)
    np.testing.assert_array_equal(found.ids, before.ids)
    assert (found.ids[:, :5] >= 0).all() and (found.ids[:, 5:] == -1).all()


def test_cpu_search_uses_selectors_and_batches_rows_with_nothing_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    retriever = build("IVF16,Flat", "nprobe=4")
    exclude = exclusions(retriever)
    retriever.search(QUERIES, K, exclude=exclude)  # the first search with exclusions probes the index
    assert retriever.exclusion_path == "selector"
    calls: list[tuple[int, bool]] = []
    original = FaissRetriever._raw_search

    def spy(self: FaissRetriever, queries: np.ndarray, fetch: int, params: Any = None) -> Any:
        calls.append((len(queries), params is not None))
        return original(self, queries, fetch, params)

    def no_overfetch(*args: Any) -> None:
        raise AssertionError("over-fetched on the CPU")

    monkeypatch.setattr(FaissRetriever, "_raw_search", spy)
    monkeypatch.setattr(FaissRetriever, "_overfetch", no_overfetch)
    retriever.search(QUERIES, K, exclude=exclude)
    empty = sum(1 for row in exclude if not len(row))
    assert calls[0] == (empty, False)  # one plain batched call for the rows with nothing excluded
    assert calls[1:] == [(1, True)] * (len(QUERIES) - empty)  # one call with a selector per other row
    calls.clear()
    retriever.search(QUERIES, K)
    assert calls == [(len(QUERIES), False)]


@pytest.mark.parametrize(("index", "search"), [("Flat", ""), ("IVF16,Flat", "nprobe=4")])
def test_exclusion_after_removing_and_adding_items(index: str, search: str) -> None:
    """The selector path maps external ids to the positions inside ``IndexIDMap2``: they move on removal."""
    retriever = build(index, search)
    exclude = exclusions(retriever)
    retriever.search(QUERIES, K, exclude=exclude)
    removed = retriever.search(QUERIES, 3).ids.ravel()
    retriever.remove(np.concatenate([removed, IDS[:100]]))
    retriever.add(clustered(50, seed=4), np.arange(50, dtype=np.int64) + 10**9)
    exclude[5] = np.arange(25, dtype=np.int64) + 10**9  # half of the new items
    found = retriever.search(QUERIES, K, exclude=exclude)
    assert retriever.exclusion_path == "selector"
    np.testing.assert_array_equal(found.ids, overfetched(retriever, exclude).ids)
    assert not np.isin(found.ids, removed).any()
    for row, banned in enumerate(exclude):
        assert not np.isin(found.ids[row], banned).any()


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize(
    ("index", "search", "default"),
    [("IVF64,Flat", "nprobe=6", "nprobe=1"), ("HNSW8", "efSearch=64", "efSearch=16")],
    ids=["ivf-nprobe", "hnsw-efSearch"],
)
def test_configured_search_parameters_stay_in_effect_with_exclusion(index: str, search: str, default: str) -> None:
    """Parameters passed with a search replace the index's own: the selector's must carry nprobe / efSearch."""
    data = clustered(5000, seed=8, centres=200)
    ids = np.arange(len(data), dtype=np.int64) + 9
    queries = clustered(200, seed=9, centres=200)
    exact = get_registry().create("retriever", "exact", metric="l2")
    exact.build(data, ids)
    truth = exact.search(queries, K).ids
    nothing = [np.array([ABSENT], dtype=np.int64)] * len(queries)  # non-empty rows that exclude nothing present
    recalls = {}
    for setting in (search, default):
        retriever = get_registry().create("retriever", "faiss", index=index, search=setting, metric="l2", seed=1)
        retriever.build(data, ids)
        plain = retriever.search(queries, K)
        excluded = retriever.search(queries, K, exclude=nothing)
        assert retriever.exclusion_path == "selector"
        np.testing.assert_array_equal(excluded.ids, plain.ids)
        recalls[setting] = (recall(plain.ids, truth), recall(excluded.ids, truth))
    assert recalls[search][0] == recalls[search][1]
    # the test can fail: FAISS's default (what parameters without the configured values would use) finds less
    assert recalls[default][0] < recalls[search][0], recalls


def test_a_loaded_index_keeps_its_search_parameters_with_exclusion(tmp_path: Any) -> None:
    retriever = build("IVF64,Flat", "nprobe=6")
    nothing = [np.array([ABSENT], dtype=np.int64)] * len(QUERIES)
    retriever.save(tmp_path)
    loaded = FaissRetriever.load(tmp_path)
    assert loaded.exclusion_path == "untested"
    np.testing.assert_array_equal(loaded.search(QUERIES, K, exclude=nothing).ids, retriever.search(QUERIES, K).ids)
    assert loaded.exclusion_path == "selector"


@pytest.mark.parametrize("index", ["PQ4np", "LSH"])
def test_an_index_that_rejects_a_selector_falls_back_to_over_fetching(
    index: str, caplog: pytest.LogCaptureFixture
) -> None:
    retriever = build(index)
    exclude = exclusions(retriever)
    with caplog.at_level(logging.DEBUG, logger="fusionrec.plugins.retrievers.faiss_impl"):
        found = retriever.search(QUERIES, K, exclude=exclude)
    assert retriever.exclusion_path == "overfetch"
    assert "takes no IDSelector" in caplog.text
    for row, banned in enumerate(exclude):
        assert not np.isin(found.ids[row], banned).any()
    np.testing.assert_array_equal(found.ids, overfetched(retriever, exclude).ids)


def test_an_index_that_ignores_its_selector_falls_back_to_over_fetching(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(FaissRetriever, "_selector_params", lambda self, row: faiss.SearchParameters())
    retriever = build()
    exclude = exclusions(retriever)
    with caplog.at_level(logging.DEBUG, logger="fusionrec.plugins.retrievers.faiss_impl"):
        found = retriever.search(QUERIES, K, exclude=exclude)
    assert retriever.exclusion_path == "overfetch" and "ignores its IDSelector" in caplog.text
    for row, banned in enumerate(exclude):
        assert not np.isin(found.ids[row], banned).any()


def test_a_gpu_index_over_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    retriever = build("IVF16,Flat", "nprobe=4")
    retriever.use_gpu = True  # faiss-gpu takes no selector; the CPU master stands in for the GPU copy here
    monkeypatch.setattr(retriever, "_searcher", lambda fetch: retriever._index)
    monkeypatch.setattr(FaissRetriever, "_search_with_selectors", lambda *args: pytest.fail("used a selector"))
    exclude = exclusions(retriever)
    found = retriever.search(QUERIES, K, exclude=exclude)
    assert retriever.exclusion_path == "overfetch"
    monkeypatch.undo()
    retriever.use_gpu = False
    np.testing.assert_array_equal(found.ids, retriever.search(QUERIES, K, exclude=exclude).ids)


@pytest.mark.parametrize("index", ["Flat", "HNSW32", "IVF32,Flat"])
def test_exhaustive_selector_calls_spread_over_faiss_threads_and_all_give_the_same_result(
    index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusionrec.plugins.retrievers.faiss_impl as module

    retriever = build(index, search="nprobe=4" if index.startswith("IVF") else "")
    rows = exclusions(retriever)
    monkeypatch.setattr(module, "faiss_threads", lambda: 1)
    alone = retriever.search(QUERIES, K, exclude=rows)
    used: list[int] = []
    real = module.ThreadPoolExecutor

    def counting(max_workers: int) -> Any:
        used.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(module, "faiss_threads", lambda: 3)
    monkeypatch.setattr(module, "ThreadPoolExecutor", counting)
    spread = retriever.search(QUERIES, K, exclude=rows)
    assert retriever.exclusion_path == "selector"
    # only a scan of every item is worth a thread per query; IVF and HNSW queries stay in the caller's thread
    assert used == ([3] if index == "Flat" else [])
    np.testing.assert_array_equal(spread.ids, alone.ids)
    np.testing.assert_array_equal(spread.scores, alone.scores)
