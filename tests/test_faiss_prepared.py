"""The ``faiss`` retriever's lean path, ``search_prepared``: the same results as the checked ``search``."""

from __future__ import annotations

import numpy as np
import pytest

from fusionrec.core.errors import DataError
from fusionrec.core.retrieval import Retriever
from fusionrec.plugins.retrievers.exact_impl import ExactRetriever
from fusionrec.plugins.retrievers.faiss_impl import FaissRetriever

RNG = np.random.default_rng(0)
VECTORS = RNG.standard_normal((500, 16)).astype(np.float32)
IDS = np.arange(1000, 1500, dtype=np.int64)
QUERIES = RNG.standard_normal((7, 16)).astype(np.float32)


def built(index: str, metric: str, search: str = "") -> FaissRetriever:
    retriever = FaissRetriever(index=index, metric=metric, search=search, device="cpu")
    retriever.build(VECTORS, IDS)
    return retriever


def assert_same(retriever: FaissRetriever, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None) -> None:
    checked = retriever.search(queries, k, exclude)
    lean = retriever.search_prepared(queries, k, exclude)
    np.testing.assert_array_equal(lean.ids, checked.ids)
    np.testing.assert_allclose(lean.scores, checked.scores, rtol=1e-6)
    assert lean.ids.dtype == np.int64 and lean.scores.dtype == np.float32
    assert lean.ids.shape == lean.scores.shape == (len(queries), k)


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize(("index", "search"), [("Flat", ""), ("HNSW16", "efSearch=32"), ("IVF8,Flat", "nprobe=2")])
def test_prepared_equals_checked(index: str, search: str, metric: str) -> None:
    retriever = built(index, metric, search)
    for rows in (QUERIES[:1], QUERIES):  # single queries (serving) and batches
        assert_same(retriever, rows, 10, None)


def test_padding_when_fewer_results_than_k() -> None:
    retriever = built("IVF8,Flat", "l2", "nprobe=1")  # one list of ~60 items cannot fill k = 200
    assert_same(retriever, QUERIES, 200, None)
    lean = retriever.search_prepared(QUERIES[:1], 600)
    assert (lean.ids[0, 500:] == -1).all() and np.isneginf(lean.scores[0, 500:]).all()


@pytest.mark.parametrize("index", ["Flat", "HNSW16", "IVF8,Flat", "PQ4"])
def test_prepared_with_exclusions(index: str) -> None:
    retriever = built(index, "ip", "nprobe=8" if index.startswith("IVF") else "")
    seen = [retriever.search(QUERIES[i : i + 1], 5).ids[0] for i in range(len(QUERIES))]
    assert_same(retriever, QUERIES, 10, seen)  # the first search with exclusions probes the selector
    for i in range(len(QUERIES)):
        assert_same(retriever, QUERIES[i : i + 1], 10, [seen[i]])
        assert not np.isin(retriever.search_prepared(QUERIES[i : i + 1], 10, [seen[i]]).ids, seen[i]).any()
    assert_same(retriever, QUERIES[:2], 10, [np.zeros(0, dtype=np.int64), seen[1]])


def test_prepared_does_not_touch_the_queries() -> None:
    retriever = built("Flat", "cosine")
    queries = QUERIES.copy()
    retriever.search_prepared(queries, 5)
    np.testing.assert_array_equal(queries, QUERIES)


def test_empty_index_and_no_queries() -> None:
    with pytest.raises(DataError, match="the index is empty"):
        FaissRetriever(device="cpu").search_prepared(QUERIES, 5)
    result = built("Flat", "ip").search_prepared(QUERIES[:0], 5)
    assert result.ids.shape == (0, 5)


def test_the_interface_default_is_the_checked_search() -> None:
    exact = ExactRetriever()
    exact.build(VECTORS, IDS)
    assert type(exact).search_prepared is Retriever.search_prepared
    np.testing.assert_array_equal(exact.search_prepared(QUERIES, 5).ids, exact.search(QUERIES, 5).ids)
