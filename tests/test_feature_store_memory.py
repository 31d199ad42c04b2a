"""The feature store at scale: key lookups without a dict over the store, vectors streamed out and mapped in."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fusionrec.core.engine.feature_cache import FeatureStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from memory import keys, one, run_child, vectors


def test_rows_of_finds_present_keys_and_marks_absent_ones(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "text", "fp")
    content, data = keys(1000), vectors(1000)
    written = store.write([(content[::-1], data[::-1])], 64)  # stored in another order than sorted
    wanted = np.concatenate([content[::7], np.array([b"f" * 32, b"0" * 32], dtype="S32")])
    rows = written.rows_of(wanted)
    assert rows.dtype == np.int64 and rows[-2] == -1 and rows[-1] == 999  # key 0 is the last row written
    np.testing.assert_array_equal(np.asarray(written.vectors)[rows[:-2]], data[::7])
    assert written.rows_of(wanted[:0]).shape == (0,)
    empty = FeatureStore(tmp_path, "text", "other").write([(content[:0], data[:0])], 64)
    np.testing.assert_array_equal(empty.rows_of(content[:3]), [-1, -1, -1])


def test_vectors_are_streamed_in_blocks_and_memory_mapped(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "image", "fp")
    content, data = keys(300), vectors(300)
    written = store.write([(content[:100], data[:100]), (content[100:], data[100:])], 64)
    assert isinstance(written.vectors, np.memmap) and not written.vectors.flags.writeable
    np.testing.assert_array_equal(np.asarray(written.vectors), data)
    np.testing.assert_array_equal(np.load(written.folder / "vectors.npy"), data)  # a plain .npy file


def test_a_bad_block_leaves_the_previous_generation(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, "image", "fp")
    content, data = keys(10), vectors(10)
    store.write([(content, data)], 64)
    with pytest.raises(ValueError, match=r"expected \[rows, 64\]"):
        store.write([(content, data[:, :32])], 64)
    kept = store.load()
    assert kept is not None and np.array_equal(np.asarray(kept.vectors), data)
    assert not list(store.path.glob(".tmp-*"))


def test_opening_a_store_costs_far_less_than_its_vectors(tmp_path: Path) -> None:
    """200,000 × 64 float32 is 49 MiB of vectors; a cached run's open and lookup must stay well under it (a dict
    over the keys, as before, took ~230 bytes per item: 44 MiB)."""
    n = 200_000
    one("store-write", n, tmp_path)
    result = run_child("store-read", n, tmp_path)  # a fresh process: its peak is this step's alone
    assert 0 < result["step_bytes"] < n * 64 * 4 / 2
