"""``fusionrec bench retrieval``: a small run through the CLI writes its three files; bad options fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from fusionrec.core import cli
from fusionrec.core.bench import retrieval as br
from fusionrec.core.bench.retrieval_data import ID_OFFSET, Dataset, make_exclusion, synthetic
from fusionrec.core.bench.timing import alternate, calls_for, paired_calls
from fusionrec.core.errors import FusionrecError

# --threads 1: two OpenMP threads on a busy 2-core machine wait on each other for a time slice per single query
QUICK = ["bench", "retrieval", "--quick", "--dim", "16", "--repeats", "1", "--threads", "1", "--quiet"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_quick_run_writes_json_markdown_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = faiss.omp_get_max_threads()
    code, out, err = run(
        capsys, *QUICK, "--index", "Flat", "--index", "IVF16,Flat|nprobe=4", "--index", "IVF16,Flat|nprobe=16",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        f"wrote {tmp_path / name}" for name in ("retrieval.json", "retrieval.md", "retrieval.png")
    ]
    assert faiss.omp_get_max_threads() == threads, "--threads must not outlive the run"

    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert {"benchmark", "command", "machine", "settings", "datasets", "targets", "load_average_1min"} <= set(result)
    assert {"cpu", "cores", "faiss", "faiss_build", "date"} <= set(result["machine"])
    assert result["command"].startswith("fusionrec bench retrieval --quick --dim 16 --index Flat")
    assert result["settings"]["threads"] == 1
    (data,) = result["datasets"]
    assert (data["n"], data["dim"], data["queries"]) == (2000, 16, 256)
    flat, coarse, fine = data["results"]
    assert [e["label"] for e in data["results"]] == ["Flat", "IVF16,Flat|nprobe=4", "IVF16,Flat|nprobe=16"]
    assert flat["recall_at_10"] == 1.0 and flat["same_ids_as_raw"] == 1.0
    assert fine["recall_at_10"] == 1.0 > coarse["recall_at_10"]  # nprobe = nlist searches every list
    assert coarse["build_s"] == fine["build_s"], "configurations of one factory string share one built index"
    for entry in data["results"]:
        assert entry["serialized_bytes"] > 0 and entry["speedup_vs_flat"]
        for mode in ("batch1", "batch"):
            timing = entry[mode]
            assert timing["raw_qps"] > 0 and timing["fusionrec_qps"] > 0
            assert timing["ratio"] == pytest.approx(timing["fusionrec_qps"] / timing["raw_qps"])
    assert flat["batch"]["size"] == 256 and 20 <= flat["batch1"]["queries"] <= 256
    for entry in data["results"]:  # the engine's path, search_prepared, timed the same way
        for mode in ("batch1_prepared", "batch_prepared"):
            assert entry[mode]["raw_qps"] > 0 and entry[mode]["fusionrec_qps"] > 0
    prepared = result["targets"]["prepared_qps_ratio"]
    assert prepared["batch1"]["measurements"] == 3 and "median" in prepared["batch"]
    assert "search_prepared (the engine's path)" in (tmp_path / "retrieval.md").read_text()

    # exclusion measured once per factory string, at its first search parameters
    assert [x["label"] for x in data["exclusion"]] == ["Flat", "IVF16,Flat|nprobe=4"]
    methods = data["exclusion"][0]["methods"]
    assert set(methods) == {"overfetch_batched", "overfetch_per_user", "idselector_per_user"}
    assert all(m["leaked"] == 0 and m["recall_at_10"] == 1.0 for m in methods.values())
    assert data["exclusion"][0]["faster_per_user"] in ("over-fetch", "IDSelector")

    assert result["targets"]["wrapper_qps_ratio"]["measurements"] == 6
    assert result["targets"]["ann_1m"]["applies"] is False  # 2,000 items

    markdown = (tmp_path / "retrieval.md").read_text()
    assert result["command"] in markdown and "![recall@10 against queries per second](retrieval.png)" in markdown
    assert "| `Flat` | – |" in markdown and "| `IVF16,Flat` | nprobe=16 |" in markdown
    assert (tmp_path / "retrieval.png").read_bytes().startswith(b"\x89PNG")


def test_real_vectors_from_a_npy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
    np.save(tmp_path / "items.npy", vectors)
    code, _, err = run(
        capsys, *QUICK, "--sizes", "none", "--vectors", str(tmp_path / "items.npy"), "--vectors-name", "toy",
        "--index", "Flat", "--metric", "l2", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    (data,) = json.loads((tmp_path / "out" / "retrieval.json").read_text())["datasets"]
    assert data["name"] == "toy 400 × 8" and data["source"]["kind"] == "file" and len(data["source"]["sha256"]) == 64
    assert data["results"][0]["recall_at_10"] == 1.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--index", "HNSW3x2"], "error: --index 'HNSW3x2': FAISS cannot build the index 'HNSW3x2': could not parse"),
        (["--index", "HNSW32|nprobe=4"], "error: --index 'HNSW32|nprobe=4': FAISS cannot apply 'nprobe=4'"),
        (["--index", "|efSearch=4"], "error: --index '|efSearch=4': no index_factory string"),
        (["--sizes", "10k,lots"], "error: --sizes: 'lots' is not an item count"),
        (["--sizes", "none"], "error: nothing to measure: give --sizes, --vectors FILE.npy, or both"),
        (["--vectors", "missing.npy"], "error: missing.npy: no such file; give a .npy file of item vectors"),
    ],
    ids=["unknown-index", "bad-search", "no-factory", "bad-size", "nothing", "missing-vectors"],
)
def test_bad_options_are_one_line_and_exit_2(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *QUICK, *args, "--out", str(tmp_path / "out"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(expected), err
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_matrix_is_a_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "flat.npy", np.zeros(500, dtype=np.float32))
    code, _, err = run(capsys, *QUICK, "--vectors", str(tmp_path / "flat.npy"), "--out", str(tmp_path / "out"))
    assert code == 2 and "expected item vectors as a non-empty (n, dim) numeric array, got float32 (500,)" in err


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is present")
def test_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *QUICK, "--device", "cuda", "--out", str(tmp_path))
    assert code == 2 and err.startswith("error: --device 'cuda': cuda was asked for but faiss sees no GPU"), err


def test_option_parsing_and_default_indexes() -> None:
    assert br.parse_sizes("10000, 100k,1M") == (10_000, 100_000, 1_000_000)
    assert br.parse_sizes("none") == ()
    with pytest.raises(FusionrecError, match="at least 100"):
        br.parse_sizes("50")
    assert br.parse_index(" IVF4096,PQ32 | nprobe=16 ") == br.IndexChoice("IVF4096,PQ32", "nprobe=16")
    assert br.parse_index("HNSW32").label == "HNSW32"
    assert [br.ivf_lists(n) for n in (10_000, 100_000, 1_000_000)] == [512, 1024, 4096]  # ≈ 4·√n, a power of 2
    assert [br.pq_subquantizers(d) for d in (128, 384, 100, 3)] == [32, 96, 25, 1]
    labels = [c.label for c in br.default_indexes(1_000_000, 128)]
    assert labels == [
        "Flat",
        "HNSW32|efSearch=32",
        "HNSW32|efSearch=128",
        "IVF4096,Flat|nprobe=8",
        "IVF4096,Flat|nprobe=32",
        "IVF4096,Flat|nprobe=128",
        "IVF4096,PQ32np|nprobe=32",
    ]


def test_synthetic_data_is_seeded_unit_length_and_clustered() -> None:
    a, b = synthetic(3000, 16, 50, seed=1), synthetic(3000, 16, 50, seed=1)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.array_equal(a.vectors, synthetic(3000, 16, 50, seed=2).vectors)
    # clustered: a query's nearest item is far closer than a random item
    sims = a.queries @ a.vectors.T
    assert np.median(sims.max(axis=1)) > np.median(sims) + 0.5


def test_seen_items_are_half_near_and_excluded_from_the_exact_answer() -> None:
    data = synthetic(3000, 16, 40, seed=0)
    exclusion = make_exclusion(data, 40, 10, "ip", seed=0)
    assert len(exclusion.seen) == 40 and exclusion.truth.shape == (40, 10)
    sizes = [len(s) for s in exclusion.seen]
    assert min(sizes) >= 50 and max(sizes) <= 500
    nearest = np.argsort(-(exclusion.queries @ data.vectors.T), axis=1) + ID_OFFSET
    for row, seen in enumerate(exclusion.seen):
        assert not np.isin(exclusion.truth[row], seen).any()
        assert np.isin(nearest[row, :20:2], seen).all()  # every other nearest item is seen
        allowed = nearest[row][~np.isin(nearest[row], seen)]
        np.testing.assert_array_equal(exclusion.truth[row], allowed[:10])


def test_alternating_rounds_rotate_who_goes_first() -> None:
    order: list[str] = []
    times = alternate({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3)
    assert order == ["a", "b", "b", "a", "a", "b"] and [len(t) for t in times.values()] == [3, 3]
    calls: list[tuple[str, int]] = []
    paired = paired_calls(lambda r: calls.append(("x", r)), lambda r: calls.append(("y", r)), 2, 1, ("x", "y"))
    assert calls == [("x", 0), ("y", 0), ("y", 1), ("x", 1)]
    assert {"x_qps", "y_qps", "ratio", "x_p50_us", "y_p50_us", "overhead_p50_us"} <= set(paired)
    assert calls_for(0.5, 1000, 1.0, 20, 300) == 20 and calls_for(1e-5, 1000, 1.0, 20, 300) == 300


def test_core_reads_the_faiss_index_of_the_registered_retriever() -> None:
    from fusionrec.registry import get_registry

    options = br.BenchOptions(sizes=(200,), repeats=1)
    retriever = br.create_retriever(get_registry(), options, br.IndexChoice("Flat"))
    data = Dataset("t", synthetic(200, 8, 5, 0).vectors, synthetic(200, 8, 5, 0).queries)
    retriever.build(data.vectors, data.ids)
    master, searched = br.faiss_indexes(retriever, 10)
    assert master.ntotal == searched.ntotal == 200
    with pytest.raises(FusionrecError, match="does not expose its FAISS index"):
        br.faiss_indexes(object(), 10)
