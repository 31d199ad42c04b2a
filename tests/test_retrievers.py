"""The built-in retrievers (``exact``, ``faiss``) beyond the contract that tests/test_contracts.py runs on them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from fusionrec.core.assembly.config import parse_pipeline
from fusionrec.core.errors import ConfigError, DataError
from fusionrec.core.retrieval import Retriever
from fusionrec.registry import get_registry
from fusionrec.registry.contracts import run_contract
from fusionrec.registry.retriever_contracts import reference_scores

RNG = np.random.default_rng(7)
VECTORS = RNG.standard_normal((300, 12)).astype(np.float32) * RNG.uniform(0.5, 3.0, (300, 1)).astype(np.float32)
IDS = np.arange(300, dtype=np.int64) * 7 + 100_000
QUERIES = RNG.standard_normal((9, 12)).astype(np.float32)
NO_GPU = faiss.get_num_gpus() == 0


def make(name: str, **params: Any) -> Retriever:
    retriever = get_registry().create("retriever", name, **params)
    assert isinstance(retriever, Retriever)
    retriever.build(VECTORS, IDS)
    return retriever


def clustered(n: int = 3000, dim: int = 16, centres: int = 30, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)).astype(np.float32) * 4
    return (means[rng.integers(0, centres, n)] + rng.standard_normal((n, dim))).astype(np.float32)


@pytest.mark.parametrize("name", ["exact", "faiss"])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_each_metric_matches_brute_force(name: str, metric: str) -> None:
    result = make(name, metric=metric).search(QUERIES, 7)
    ref = reference_scores(QUERIES, VECTORS, metric)
    order = np.argsort(-ref, axis=1)[:, :7]
    np.testing.assert_array_equal(result.ids, IDS[order])
    np.testing.assert_allclose(result.scores, np.take_along_axis(ref, order, axis=1), rtol=1e-4, atol=1e-4)
    if metric == "l2":
        assert (result.scores <= 0).all()  # negative squared distances: the nearest item has the highest score
    if metric == "cosine":
        assert (np.abs(result.scores) <= 1 + 1e-5).all()


@pytest.mark.parametrize("name", ["exact", "faiss"])
def test_cosine_ignores_lengths_and_ip_does_not(name: str) -> None:
    cosine, ip = make(name, metric="cosine"), make(name, metric="ip")
    np.testing.assert_array_equal(cosine.search(QUERIES * 50, 5).ids, cosine.search(QUERIES, 5).ids)
    # ip favours long vectors: the top items under ip are longer on average than those under cosine
    norms = dict(zip(IDS.tolist(), np.linalg.norm(VECTORS, axis=1).tolist(), strict=True))
    mean = lambda ids: np.mean([norms[i] for i in ids.ravel().tolist()])  # noqa: E731
    assert mean(ip.search(QUERIES, 5).ids) > mean(cosine.search(QUERIES, 5).ids)


@pytest.mark.parametrize(
    ("index", "search"),
    [("IVF16,Flat", "nprobe=8"), ("HNSW16", "efSearch=64")],
    ids=["ivf", "hnsw"],
)
def test_approximate_indexes_reach_recall_090(index: str, search: str) -> None:
    data = clustered()
    ids = np.arange(len(data), dtype=np.int64) + 5
    queries = clustered(50, seed=11)
    exact = get_registry().create("retriever", "exact", metric="l2")
    exact.build(data, ids)
    approx = get_registry().create("retriever", "faiss", index=index, search=search, metric="l2", seed=1)
    approx.build(data, ids)
    truth, found = exact.search(queries, 10).ids, approx.search(queries, 10).ids
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), found.tolist(), strict=True)])
    assert recall >= 0.9, recall
    # exclusion on an approximate index: over-fetch and filter still returns k results and none excluded
    banned = [row[:8] for row in found]
    widened = approx.search(queries, 10, exclude=banned)
    assert (widened.ids >= 0).all()
    for row, out in zip(widened.ids, banned, strict=True):
        assert not set(row.tolist()) & set(out.tolist())


@pytest.mark.parametrize(
    "params",
    [{"index": "IVF16,Flat", "search": "nprobe=8"}, {"index": "HNSW16", "search": "efSearch=32"}],
    ids=["ivf", "hnsw"],
)
def test_approximate_indexes_meet_the_contract(params: dict[str, Any]) -> None:
    run_contract("retriever", "faiss", params=params)


def test_ivf_keeps_external_ids_right_after_removal() -> None:
    data, ids = clustered(1000), np.arange(1000, dtype=np.int64) * 3 + 11
    retriever = get_registry().create("retriever", "faiss", index="IVF8,Flat", search="nprobe=8", metric="l2")
    retriever.build(data, ids)
    assert retriever.remove(ids[:400]) == 400 and len(retriever) == 600
    exact = get_registry().create("retriever", "exact", metric="l2")
    exact.build(data[400:], ids[400:])
    queries = clustered(20, seed=5)
    np.testing.assert_array_equal(retriever.search(queries, 10).ids, exact.search(queries, 10).ids)


def test_a_bad_factory_string_is_a_config_error_at_retriever_index() -> None:
    text = textwrap.dedent(
        """\
        fusionrec: 1
        retriever: {type: faiss, index: "IVF4096,Flatt"}
        """
    )
    with pytest.raises(ConfigError) as excinfo:
        parse_pipeline(text, file="pipeline.yaml")
    message = str(excinfo.value)
    assert "retriever.index" in message and "IVF4096,Flatt" in message and "could not parse" in message
    assert excinfo.value.path == ("retriever", "index")


def test_bad_search_parameters_are_a_config_error_at_retriever_search() -> None:
    spec = parse_pipeline('fusionrec: 1\nretriever: {type: faiss, index: "HNSW32", search: "nprobe=4"}\n')
    assert spec.retriever is not None
    with pytest.raises(ConfigError, match=r"retriever\.search: .*nprobe=4.*HNSW32"):
        get_registry().build(spec.retriever)


def test_too_few_vectors_to_train_is_a_config_error_at_index() -> None:
    retriever = get_registry().create("retriever", "faiss", index="IVF512,Flat")
    with pytest.raises(ConfigError, match=r"index: training the FAISS index 'IVF512,Flat' on 300 vectors failed"):
        retriever.build(VECTORS, IDS)


def test_training_uses_a_seeded_sample() -> None:
    data = clustered(2000)
    ids = np.arange(2000, dtype=np.int64)
    runs = []
    for _ in range(2):
        retriever = get_registry().create("retriever", "faiss", index="IVF8,Flat", train_sample=500, seed=3)
        retriever.build(data, ids)
        runs.append(retriever.search(data[:10], 5))
    np.testing.assert_array_equal(runs[0].ids, runs[1].ids)


def test_an_index_that_cannot_remove_says_so_and_stays_intact() -> None:
    retriever = make("faiss", index="HNSW16")
    before = retriever.search(QUERIES, 5)
    with pytest.raises(ConfigError, match=r"'HNSW16' cannot remove items .*HNSW"):
        retriever.remove(IDS[:3])
    assert len(retriever) == len(IDS)
    np.testing.assert_array_equal(retriever.search(QUERIES, 5).ids, before.ids)


@pytest.mark.parametrize("name", ["exact", "faiss"])
def test_bad_input_is_a_clear_data_error(name: str) -> None:
    retriever = make(name)
    with pytest.raises(DataError, match="k must be a positive integer, got 0"):
        retriever.search(QUERIES, 0)
    with pytest.raises(DataError, match="queries have dimension 11 but the index holds 12-dimensional vectors"):
        retriever.search(QUERIES[:, :11], 3)
    with pytest.raises(DataError, match=r"ids already in the index: \[100000\]"):
        retriever.add(VECTORS[:1], IDS[:1])
    with pytest.raises(DataError, match="ids must be unique"):
        retriever.build(VECTORS[:2], np.array([4, 4]))
    with pytest.raises(DataError, match="exclude has 1 rows for 9 queries"):
        retriever.search(QUERIES, 3, exclude=[IDS[:2]])
    assert retriever.remove(np.array([1, 2, 3])) == 0  # unknown ids are counted as absent, as Retriever documents
    empty = get_registry().create("retriever", name)
    with pytest.raises(DataError, match="call build"):
        empty.search(QUERIES, 3)


@pytest.mark.parametrize("name", ["exact", "faiss"])
def test_a_missing_or_corrupted_index_file_is_a_data_error(name: str, tmp_path: Path) -> None:
    retriever = make(name, metric="cosine")
    retriever.save(tmp_path / "index")
    cls = type(retriever)
    assert np.array_equal(cls.load(tmp_path / "index").search(QUERIES, 4).ids, retriever.search(QUERIES, 4).ids)
    with pytest.raises(DataError, match=r"retriever\.json is missing"):
        cls.load(tmp_path / "elsewhere")
    data_file = sorted(p for p in (tmp_path / "index").iterdir() if p.suffix in (".faiss", ".npy"))[0]
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{data_file.name}: the index file is corrupted: its sha256 differs"):
        cls.load(tmp_path / "index")
    data_file.unlink()
    with pytest.raises(DataError, match=rf"{data_file.name}: the index file is missing"):
        cls.load(tmp_path / "index")


def test_device_cuda_without_a_gpu_is_a_config_error() -> None:
    if not NO_GPU:
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match=r"device: cuda was asked for but faiss sees no GPU"):
        get_registry().create("retriever", "faiss", device="cuda")
    assert not get_registry().create("retriever", "faiss", device="auto").use_gpu


@pytest.mark.skipif(NO_GPU, reason="faiss sees no GPU (faiss-cpu, or no CUDA device)")
def test_gpu_search_matches_cpu_search_and_saves_a_cpu_index(tmp_path: Path) -> None:
    data, ids = clustered(5000), np.arange(5000, dtype=np.int64) + 1
    queries = clustered(64, seed=9)
    for index, search in (("Flat", ""), ("IVF32,Flat", "nprobe=32")):
        gpu = get_registry().create("retriever", "faiss", index=index, search=search, device="cuda", metric="l2")
        cpu = get_registry().create("retriever", "faiss", index=index, search=search, device="cpu", metric="l2")
        gpu.build(data, ids)
        cpu.build(data, ids)
        assert gpu.use_gpu
        exclude = [ids[:10]] * len(queries)
        a, b = gpu.search(queries, 10, exclude=exclude), cpu.search(queries, 10, exclude=exclude)
        assert np.mean(a.ids == b.ids) > 0.99
        gpu.save(tmp_path / index)
        loaded = type(gpu).load(tmp_path / index)
        np.testing.assert_array_equal(loaded.search(queries, 10).ids, gpu.search(queries, 10).ids)


def test_the_plugin_module_does_not_import_faiss() -> None:
    code = "import sys, fusionrec.plugins.retrievers.faiss as m; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_contract_catches_a_retriever_that_ignores_exclusion(monkeypatch: pytest.MonkeyPatch) -> None:
    from fusionrec.plugins.retrievers.exact_impl import ExactRetriever

    original = ExactRetriever.search

    def leaky(self: ExactRetriever, queries: Any, k: int, exclude: Any = None) -> Any:
        return original(self, queries, k)

    monkeypatch.setattr(ExactRetriever, "search", leaky)
    with pytest.raises(AssertionError, match="row 0 got an excluded id"):
        run_contract("retriever", "exact")


def test_the_contract_catches_unsorted_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    from fusionrec.core.retrieval import SearchResult
    from fusionrec.plugins.retrievers.exact_impl import ExactRetriever

    original = ExactRetriever.search

    def reversed_search(self: ExactRetriever, queries: Any, k: int, exclude: Any = None) -> Any:
        result = original(self, queries, k, exclude)
        return SearchResult(result.ids[:, ::-1].copy(), result.scores[:, ::-1].copy())

    monkeypatch.setattr(ExactRetriever, "search", reversed_search)
    with pytest.raises(AssertionError, match=r"padding must come after the results|not sorted best first"):
        run_contract("retriever", "exact")
