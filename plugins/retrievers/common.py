"""What every built-in retriever shares: input checks, top-k with padding, and checksummed save files.

Bad input is a :class:`~fusionrec.core.errors.DataError` saying what was found and what was expected: ``k`` that
is not positive, vectors whose dimension differs from the index's, ids that are not unique or already indexed,
and a saved index that is missing or whose checksum does not match its manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import DataError
from fusionrec.core.io import atomic_write_text, read_meta

MANIFEST = "retriever.json"
"""The manifest written beside a saved index: format, type, parameters, dimension, count and file checksums."""
FORMAT = 1


def as_matrix(vectors: npt.ArrayLike, dim: int | None, what: str) -> npt.NDArray[np.float32]:
    """``vectors`` as a C-contiguous float32 ``(n, dim)`` matrix; a DataError on a wrong shape or dimension."""
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2:
        raise DataError(f"{what} must be a 2-d array (n, dim), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise DataError(
            f"{what} have dimension {array.shape[1]} but the index holds {dim}-dimensional vectors; "
            "encode them with the same model and fuser the index was built from"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{what} contain NaN or infinite values")
    return array


def as_ids(ids: npt.ArrayLike, count: int) -> npt.NDArray[np.int64]:
    """``ids`` as a unique int64 vector of length ``count``; a DataError otherwise."""
    array = np.asarray(ids).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"item ids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if len(array) != count:
        raise DataError(f"{count} vectors but {len(array)} ids: give one id per vector")
    if (array < 0).any():
        raise DataError(f"item ids must be non-negative (-1 marks padding), got {int(array.min())}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"item ids must be unique; repeated: {unique[counts > 1][:5].tolist()}")
    return array


def check_new_ids(new: npt.NDArray[np.int64], present: npt.NDArray[np.int64]) -> None:
    """A DataError when any of ``new`` is already indexed."""
    clash = np.intersect1d(new, present)
    if len(clash):
        raise DataError(
            f"ids already in the index: {clash[:5].tolist()}{' …' if len(clash) > 5 else ''}; remove them first"
        )


def check_k(k: int) -> int:
    """``k`` as an int; a DataError unless it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise DataError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_exclude(exclude: Sequence[npt.ArrayLike] | None, rows: int) -> list[npt.NDArray[np.int64]] | None:
    """One int64 id array per query row, or ``None`` when nothing is excluded; a DataError on a row-count mismatch."""
    if exclude is None:
        return None
    if len(exclude) != rows:
        raise DataError(f"exclude has {len(exclude)} rows for {rows} queries: give one id list per query")
    out = [np.asarray(row, dtype=np.int64).reshape(-1) for row in exclude]
    return out if any(len(row) for row in out) else None


def empty_result(rows: int, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(rows, k)`` ids of ``-1`` and scores of ``-inf``: a result with nothing found."""
    return np.full((rows, k), -1, dtype=np.int64), np.full((rows, k), -np.inf, dtype=np.float32)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, kind: str, params: dict[str, Any], dim: int | None, count: int) -> None:
    """Write the manifest last (atomically), with the sha256 of every data file already in ``directory``."""
    files = {p.name: sha256_of(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    files = {name: digest for name, digest in files.items() if not name.startswith(".")}
    manifest = {"format": FORMAT, "type": kind, "params": params, "dim": dim, "count": count, "sha256": files}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path, kind: str, files: Sequence[str]) -> dict[str, Any]:
    """Read and check a manifest: it exists, is for ``kind``, and each of ``files`` exists with its checksum.

    Raises:
        DataError: the folder or a file is missing, the manifest is unreadable or for another retriever, or a
            file's checksum differs from the one recorded when it was saved (the file is corrupted).
    """
    directory = Path(directory)
    manifest = read_meta(directory, MANIFEST, what="retriever", fmt=FORMAT, expect={"type": kind})
    recorded = manifest.get("sha256") or {}
    for name in files:
        file = directory / name
        if not file.is_file():
            raise DataError("the index file is missing; save the index again", file=file)
        if recorded.get(name) != sha256_of(file):
            raise DataError(
                "the index file is corrupted: its sha256 differs from the one recorded in "
                f"{MANIFEST} when it was saved; save the index again",
                file=file,
            )
    return manifest
