"""The data of ``fusionrec bench retrieval``: synthetic clustered vectors, real vectors from a file, exact answers.

Item ids are ``ID_OFFSET + row`` (so the retriever's id translation is exercised); exact top-k answers come from
a raw FAISS ``IndexFlat``. For the seen-item exclusion measurement, each user gets 50–500 seen items: every other
one of their nearest items and as many drawn from the whole catalogue, and the exact top-k without them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import DataError

MIN_ITEMS = 100
CENTRES, SPREAD = 1000, 1.0
"""Synthetic data: 1,000 Gaussian clusters; within-cluster noise with the same total variance as the centres'."""
QUERY_NOISE = 0.5
"""Queries drawn from real vectors: a row plus Gaussian noise of 0.5 × each column's standard deviation."""
ID_OFFSET = 1_000_000_000
"""External ids are ``ID_OFFSET + row``, so id translation (IndexIDMap2, IVF ids) is exercised."""
EXCLUDED_MIN, EXCLUDED_MAX = 50, 500
CHUNK = 65_536


def faiss_module() -> Any:
    """FAISS, imported on first use (``fusionrec --help`` stays fast) and typed loosely: its bundled stubs do not
    know the keyword arguments its Python layer accepts (``SearchParametersIVF(sel=…, nprobe=…)``)."""
    import faiss

    return faiss


@dataclass
class Dataset:
    """Item vectors (``ids`` are ``ID_OFFSET + row``), query vectors and where they come from."""

    name: str
    vectors: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return np.arange(len(self.vectors), dtype=np.int64) + ID_OFFSET


def synthetic(n: int, dim: int, n_queries: int, seed: int) -> Dataset:
    """Clustered Gaussian vectors, L2-normalised (so inner product is cosine), and queries from the same law.

    1,000 centres ~ N(0, I); a point is a centre plus noise whose variance along the i-th direction of a random
    rotation decays as 1/i (total variance that of a centre), the way real embeddings concentrate their variance
    in a few directions. Centres and rotation depend only on ``seed`` and ``dim``, so every size samples the
    same distribution.
    """
    law = np.random.default_rng([seed, dim, 0])
    centres = law.standard_normal((CENTRES, dim)).astype(np.float32)
    scale = np.arange(1, dim + 1, dtype=np.float64) ** -0.5
    scale *= SPREAD * math.sqrt(dim / float((scale**2).sum()))
    rotation, _ = np.linalg.qr(law.standard_normal((dim, dim)))
    basis = (scale[:, None] * rotation).astype(np.float32)

    def sample(count: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
        out = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, CHUNK):
            rows = min(CHUNK, count - start)
            chunk = centres[rng.integers(0, CENTRES, rows)]
            chunk += rng.standard_normal((rows, dim), dtype=np.float32) @ basis
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            out[start : start + rows] = chunk
        return out

    vectors = sample(n, np.random.default_rng([seed, dim, 1, n]))
    queries = sample(n_queries, np.random.default_rng([seed, dim, 2, n]))
    source = {
        "kind": "synthetic",
        "centres": CENTRES,
        "spread": SPREAD,
        "normalised": True,
        "seed": seed,
        "law": "centre ~ N(0, I) + noise with variance ∝ 1/i along a random rotation, rows L2-normalised",
    }
    return Dataset(f"synthetic {n:,} × {dim}", vectors, queries, source)


def open_matrix(path: Path, what: str) -> npt.NDArray[Any]:
    """A ``.npy`` file of an ``(n, dim)`` numeric array, memory-mapped (nothing read yet); a DataError otherwise."""
    if not path.is_file():
        raise DataError(f"no such file; give a .npy file of {what} ((n, dim) floats, numpy.save)", file=path)
    try:
        array: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable .npy file ({exc}); write {what} with numpy.save", file=path) from exc
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or min(array.shape) == 0:
        raise DataError(
            f"expected {what} as a non-empty (n, dim) numeric array, got {array.dtype} {array.shape}", file=path
        )
    return array


def load_matrix(path: Path, what: str) -> npt.NDArray[np.float32]:
    """A ``.npy`` file of ``(n, dim)`` finite numbers as a C-contiguous float32 matrix; a DataError otherwise."""
    matrix = np.ascontiguousarray(open_matrix(path, what), dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise DataError(f"{what} contain NaN or infinite values", file=path)
    return matrix


def from_file(path: Path, queries_path: Path | None, name: str | None, n_queries: int, seed: int) -> Dataset:
    """Item vectors from ``path``; queries from ``queries_path``, else ``n_queries`` seeded item rows plus noise."""
    vectors = load_matrix(path, "item vectors")
    if len(vectors) < MIN_ITEMS:
        raise DataError(f"{len(vectors)} item vectors; the benchmark needs at least {MIN_ITEMS}", file=path)
    source: dict[str, Any] = {"kind": "file", "path": str(path), "sha256": _sha256(path), "seed": seed}
    if queries_path is not None:
        queries = load_matrix(queries_path, "query vectors")
        if queries.shape[1] != vectors.shape[1]:
            raise DataError(
                f"queries have dimension {queries.shape[1]}, the item vectors {vectors.shape[1]}", file=queries_path
            )
        source["queries"] = str(queries_path)
    else:
        rng = np.random.default_rng([seed, 3])
        rows = rng.choice(len(vectors), size=n_queries, replace=n_queries > len(vectors))
        spread = vectors[rng.choice(len(vectors), size=min(len(vectors), 100_000), replace=False)].std(axis=0)
        noise = rng.standard_normal((n_queries, vectors.shape[1]), dtype=np.float32) * (QUERY_NOISE * spread)
        queries = (vectors[rows] + noise).astype(np.float32)
        source["queries"] = f"{n_queries} seeded item rows + N(0, ({QUERY_NOISE} × column std)²) noise"
    return Dataset(f"{name or path.stem} {len(vectors):,} × {vectors.shape[1]}", vectors, queries, source)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exact_search(data: Dataset, queries: npt.NDArray[np.float32], k: int, metric: str) -> npt.NDArray[np.int64]:
    """Exact top-``k`` ids by raw FAISS brute force (``ip`` or ``l2``)."""
    faiss = faiss_module()
    dim = data.vectors.shape[1]
    index = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
    index.add(data.vectors)
    _, rows = index.search(queries, k)
    ids: npt.NDArray[np.int64] = np.where(rows >= 0, rows + ID_OFFSET, -1).astype(np.int64)
    return ids


@dataclass
class Exclusion:
    """The exclusion measurement's users: their query vectors, seen ids, and exact top-k ids without those."""

    queries: npt.NDArray[np.float32]
    seen: list[npt.NDArray[np.int64]]
    truth: npt.NDArray[np.int64]


def make_exclusion(data: Dataset, users: int, k: int, metric: str, seed: int) -> Exclusion:
    """For the first ``users`` queries: 50–500 seen ids each (fewer on small sets), half among the nearest items."""
    n = len(data.vectors)
    most = max(2, min(EXCLUDED_MAX, (n - k) // 4))
    least = min(EXCLUDED_MIN, most)
    queries = np.ascontiguousarray(data.queries[:users])
    nearest = exact_search(data, queries, most + k, metric)
    rng = np.random.default_rng([seed, 4, n])
    seen, truth = [], np.full((len(queries), k), -1, dtype=np.int64)
    for row in range(len(queries)):
        size = int(rng.integers(least, most + 1))
        close = nearest[row, :size:2]
        far = rng.choice(n, size=size, replace=False) + ID_OFFSET
        far = far[~np.isin(far, close)][: size - len(close)]
        banned = np.unique(np.concatenate([close, far]))
        seen.append(banned)
        allowed = nearest[row][~np.isin(nearest[row], banned)]
        truth[row, : min(k, len(allowed))] = allowed[:k]
    return Exclusion(queries, seen, truth)
