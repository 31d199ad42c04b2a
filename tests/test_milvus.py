"""The ``milvus`` retriever on Milvus Lite, beyond the contract that tests/test_contracts.py runs on its defaults."""

from __future__ import annotations

import gc
import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fusionrec.core.assembly import loading
from fusionrec.core.engine.features import raw_values
from fusionrec.core.errors import ConfigError, DataError
from fusionrec.registry import get_registry
from fusionrec.registry.contracts import run_contract
from fusionrec.registry.retriever_contracts import reference_scores

pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install 'fusionrec[milvus]')")
from milvus_lite.server_manager import server_manager_instance

from fusionrec.plugins.retrievers.milvus_impl import MilvusRetriever

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)
VECTORS = RNG.standard_normal((300, 12)).astype(np.float32) * RNG.uniform(0.5, 3.0, (300, 1)).astype(np.float32)
IDS = np.arange(300, dtype=np.int64) * 7 + 100_000
QUERIES = RNG.standard_normal((9, 12)).astype(np.float32)


def make(**params: Any) -> MilvusRetriever:
    retriever = get_registry().create("retriever", "milvus", **params)
    assert isinstance(retriever, MilvusRetriever)
    retriever.build(VECTORS, IDS)
    return retriever


def lite_servers() -> int:
    return len(server_manager_instance._servers)


@pytest.fixture(autouse=True)
def nothing_left_running() -> Any:
    """Every test closes what it opened: no Milvus Lite server is left running afterwards."""
    servers = lite_servers()
    yield
    gc.collect()
    assert lite_servers() == servers, "a Milvus Lite server was left running"


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "params",
    [
        {"index": "HNSW", "index_params": {"M": 16, "efConstruction": 64}, "search_params": {"ef": 64}},
        {"index": "IVF_FLAT", "index_params": {"nlist": 8}, "search_params": {"nprobe": 4}},
        {"metric": "l2"},
        {"metric": "cosine"},
    ],
    ids=["hnsw", "ivf-flat", "l2", "cosine"],
)
def test_index_types_and_metrics_meet_the_contract(params: dict[str, Any]) -> None:
    run_contract("retriever", "milvus", params=params).close()


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_each_metric_matches_brute_force(metric: str) -> None:
    with make(metric=metric) as retriever:
        result = retriever.search(QUERIES, 7)
    ref = reference_scores(QUERIES, VECTORS, metric)
    order = np.argsort(-ref, axis=1)[:, :7]
    np.testing.assert_array_equal(result.ids, IDS[order])
    np.testing.assert_allclose(result.scores, np.take_along_axis(ref, order, axis=1), rtol=1e-4, atol=1e-4)


def test_index_parameters_reach_milvus() -> None:
    """IVF with one probed list of 64 misses neighbours that probing every list finds: nlist/nprobe are applied."""
    truth = np.argsort(-reference_scores(QUERIES, VECTORS, "ip"), axis=1)[:, :10]

    def recall(nprobe: int) -> float:
        params = {"index": "IVF_FLAT", "index_params": {"nlist": 64}, "search_params": {"nprobe": nprobe}}
        with make(**params) as retriever:
            found = retriever.search(QUERIES, 10).ids
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(IDS[truth], found, strict=True)]))

    assert recall(1) < 0.7 and recall(64) == 1.0


def test_exclusion_is_per_row_and_pads_when_too_few_remain() -> None:
    with make() as retriever:
        full = retriever.search(QUERIES[:3], 300)
        exclude = [full.ids[0, :250], np.array([], dtype=np.int64), np.array([5, 6, 7], dtype=np.int64)]
        result = retriever.search(QUERIES[:3], 60, exclude=exclude)
    np.testing.assert_array_equal(result.ids[0, :50], full.ids[0, 250:])  # the 50 that are left, in order
    assert (result.ids[0, 50:] == -1).all() and np.isneginf(result.scores[0, 50:]).all()
    np.testing.assert_array_equal(result.ids[1], full.ids[1, :60])  # nothing excluded
    np.testing.assert_array_equal(result.ids[2], full.ids[2, :60])  # ids not in the index change nothing


def test_two_retrievers_in_one_process_are_independent() -> None:
    with make() as first, make(metric="l2") as second:
        second.remove(IDS[:100])
        assert len(first) == 300 and len(second) == 200
        assert set(first.search(QUERIES, 300).ids.ravel().tolist()) == set(IDS.tolist())
        assert not set(second.search(QUERIES, 300).ids.ravel().tolist()) & set(IDS[:100].tolist())
        assert first._session.lite != second._session.lite


def test_close_stops_the_lite_server_and_deletes_the_private_folder() -> None:
    before = lite_servers()
    retriever = make()
    private = retriever._session.private
    assert private is not None and private.is_dir() and lite_servers() == before + 1
    port = server_manager_instance._servers[str(retriever._session.lite)][2]
    assert accepts_connections(port)
    retriever.close()
    assert not private.exists() and lite_servers() == before and not accepts_connections(port)
    retriever.close()  # closing twice is harmless


def test_save_copies_the_database_and_load_opens_a_private_copy(tmp_path: Path) -> None:
    with make(index="HNSW", index_params={"M": 8}) as retriever:
        before = retriever.search(QUERIES, 10)
        retriever.save(tmp_path / "saved")
        # the saved folder holds everything: the database (without a lock), the ids, the manifest
        assert (tmp_path / "saved" / "items.db" / "collections" / "fusionrec_items").is_dir()
        assert {p.name for p in (tmp_path / "saved").iterdir()} == {"items.db", "ids.npy", "retriever.json"}
        assert not (tmp_path / "saved" / "items.db" / "LOCK").exists()
        np.testing.assert_array_equal(retriever.search(QUERIES, 10).ids, before.ids)  # still usable after save
    with MilvusRetriever.load(tmp_path / "saved") as one, MilvusRetriever.load(tmp_path / "saved") as two:
        one.remove(IDS[:10])  # changes one private copy, not the saved folder nor the other copy
        np.testing.assert_array_equal(two.search(QUERIES, 10).ids, before.ids)
        assert len(one) == 290 and len(two) == 300
    with MilvusRetriever.load(tmp_path / "saved") as three:
        assert len(three) == 300


def test_an_explicit_lite_uri_keeps_the_database_there(tmp_path: Path) -> None:
    uri = tmp_path / "runs" / "x" / "items.db"
    with make(uri=str(uri)) as retriever:
        assert retriever._session.lite == uri.resolve() and retriever._session.private is None
        retriever.save(tmp_path / "saved")
    assert (uri / "collections" / "fusionrec_items").is_dir()  # closing keeps a database the user named
    with MilvusRetriever.load(tmp_path / "saved") as loaded:
        assert len(loaded) == 300 and loaded._session.lite != uri.resolve()


def test_a_saved_folder_without_its_database_is_a_data_error(tmp_path: Path) -> None:
    import shutil

    with make() as retriever:
        retriever.save(tmp_path / "saved")
    shutil.rmtree(tmp_path / "saved" / "items.db")
    with pytest.raises(DataError, match="Milvus Lite database is missing"):
        MilvusRetriever.load(tmp_path / "saved")


@pytest.mark.parametrize(
    ("params", "where", "message"),
    [
        ({"index": "HNSW", "index_params": {"Mx": 8}}, "retriever.index_params", "HNSW does not take 'Mx'"),
        ({"index_params": {"nlist": 8}}, "retriever.index_params", "FLAT does not take 'nlist'"),
        ({"index": "IVF_FLAT", "search_params": {"nprobe": 0}}, "retriever.search_params", "nprobe must be"),
        ({"index": "DISKANN"}, "retriever.index", "HNSW"),
        ({"uri": "ftp://host/x"}, "retriever.uri", "neither a Milvus Lite file"),
        ({"collection": "1 items"}, "retriever.collection", "not a Milvus collection name"),
        ({"metric": "hamming"}, "retriever.metric", "cosine"),
    ],
    ids=["hnsw-key", "flat-key", "nprobe-range", "index", "uri", "collection", "metric"],
)
def test_bad_parameters_are_located_config_errors(params: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        get_registry().spec("retriever", {"type": "milvus", **params}, path=("retriever",))
    assert where in str(caught.value) and message in str(caught.value)


def test_an_unreachable_server_is_one_config_error_naming_the_uri() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        get_registry().create("retriever", "milvus", uri=uri, timeout=1)
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert f"cannot reach the Milvus server at {uri}" in message and "uri" in message
    assert message.count(uri) == 1 and "Traceback" not in message


def test_a_token_env_that_is_not_set_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUSIONREC_TEST_MILVUS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="FUSIONREC_TEST_MILVUS_TOKEN is not set"):
        get_registry().create("retriever", "milvus", uri="http://127.0.0.1:1", token_env="FUSIONREC_TEST_MILVUS_TOKEN")


def test_the_plugin_module_does_not_import_pymilvus() -> None:
    import subprocess
    import sys

    code = "import sys, fusionrec.plugins.retrievers.milvus; print('pymilvus' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_the_quickstart_milvus_pipeline_retrieves_real_item_vectors(tmp_path: Path) -> None:
    """examples/quickstart-milvus.yaml's retriever block, built as a pipeline builds it, on TF-IDF vectors of the
    quickstart catalogue: the same top-10 as exact search, seen items excluded, the same after save → load."""
    registry = get_registry()
    loaded = loading.load(REPO / "examples" / "quickstart-milvus.yaml", registry)
    assert loaded.spec.retriever is not None and loaded.spec.retriever.type == "milvus"
    encoder = registry.create("encoder", "bow", max_features=256)
    texts = raw_values(loaded.data, encoder)
    encoder.fit(texts)
    vectors = encoder.embed(texts).numpy().astype(np.float32)
    ids = np.arange(len(vectors), dtype=np.int64)
    retriever = registry.build(loaded.spec.retriever)
    exact = registry.create("retriever", "exact")
    for index in (retriever, exact):
        index.build(vectors, ids)
    queries = vectors[:20] + 0.01
    seen = [ids[i : i + 5] for i in range(20)]
    with retriever:
        found, truth = retriever.search(queries, 10, exclude=seen), exact.search(queries, 10, exclude=seen)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.ids, truth.ids, strict=True)])
        assert recall >= 0.95, recall
        assert not any(set(row) & set(s.tolist()) for row, s in zip(found.ids.tolist(), seen, strict=True))
        retriever.save(tmp_path / "retriever")
    with type(retriever).load(tmp_path / "retriever") as again:
        np.testing.assert_array_equal(again.search(queries, 10, exclude=seen).ids, found.ids)


# --- fusionrec bench retrieval with Milvus ------------------------------------------------------------------------

BENCH = ["bench", "retrieval", "--quick", "--dim", "16", "--repeats", "1", "--threads", "1", "--quiet"]


def test_the_retrieval_benchmark_measures_milvus_beside_its_faiss_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fusionrec.core import cli

    code = cli.main(
        [*BENCH, "--index", "Flat", "--index", "milvus:FLAT", "--index", "milvus:IVF_FLAT:nlist=16|nprobe=4",
         "--index", "milvus:IVF_FLAT:nlist=16|nprobe=16", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert "--index 'milvus:IVF_FLAT:nlist=16|nprobe=4'" in result["command"]
    (data,) = result["datasets"]
    assert [e["label"] for e in data["results"]] == ["Flat"]  # the FAISS rows asked for, and only those
    flat, coarse, fine = data["milvus"]
    assert [e["faiss_index"] for e in data["milvus"]] == ["Flat", "IVF16,Flat", "IVF16,Flat"]
    assert [e["faiss_search"] for e in data["milvus"]] == ["", "nprobe=4", "nprobe=16"]
    assert flat["recall_at_10"] == 1.0 == flat["faiss_recall_at_10"]
    assert fine["recall_at_10"] == 1.0 > coarse["recall_at_10"]  # nprobe = nlist searches every list
    assert coarse["build_s"] == fine["build_s"], "search configurations of one index share one build"
    for entry in data["milvus"]:
        assert entry["stored_bytes"] > 0
        for mode in ("batch1", "batch"):
            timing = entry[mode]
            assert timing["ratio"] == pytest.approx(timing["milvus_qps"] / timing["faiss_qps"])
    markdown = (tmp_path / "retrieval.md").read_text()
    assert "| `milvus:IVF_FLAT:nlist=16\\|nprobe=16` | `IVF16,Flat` nprobe=16 |" in markdown
    assert lite_servers() == 0


def test_retriever_milvus_adds_the_default_milvus_configurations() -> None:
    from fusionrec.core.bench import retrieval as br
    from fusionrec.core.bench import retrieval_milvus as bm

    options = br.make_options(
        sizes="2000", dim=8, vectors=None, vectors_name=None, queries=None, indexes=(), metric="ip",
        retrievers=("milvus",), device="cpu", threads=None, repeats=None, seed=0, quick=True,
    )  # fmt: skip
    assert br.faiss_choices(options, 2000, 8) == ()  # only Milvus asked for
    labels = [c.label for c in br.milvus_choices(options, 2000)]
    assert labels == [
        "milvus:FLAT",
        "milvus:HNSW:M=32,efConstruction=40|ef=32",
        "milvus:HNSW:M=32,efConstruction=40|ef=128",
        *(f"milvus:IVF_FLAT:nlist=128|nprobe={p}" for p in (8, 32, 128)),
    ]
    assert [bm.faiss_twin(c) for c in br.milvus_choices(options, 2000)][1:4] == [
        ("HNSW32", "efSearch=32"),
        ("HNSW32", "efSearch=128"),
        ("IVF128,Flat", "nprobe=8"),
    ]


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        ("milvus:HNSW:Mx=3", "error: --index 'milvus:HNSW:Mx=3': index_params: HNSW does not take 'Mx'"),
        ("milvus:HNSW:M=big", "error: --index 'milvus:HNSW:M=big': 'M=big' is not KEY=INTEGER"),
        ("milvus:", "error: --index 'milvus:': no Milvus index type"),
    ],
    ids=["unknown-key", "not-an-integer", "no-index"],
)
def test_bad_milvus_index_options_are_one_line(
    index: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fusionrec.core import cli

    assert cli.main([*BENCH, "--index", index, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(expected), err
