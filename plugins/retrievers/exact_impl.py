"""Exact top-k search with numpy: every query against every item, excluded items masked before the top-k."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import DataError
from fusionrec.core.io import atomic_write
from fusionrec.core.retrieval import Retriever, SearchResult
from fusionrec.plugins.retrievers.common import (
    as_ids,
    as_matrix,
    check_exclude,
    check_k,
    check_new_ids,
    empty_result,
    read_manifest,
    write_manifest,
)

KIND = "exact"
FILES = ("vectors.npy", "ids.npy")


def normalise(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
    return out


class ExactRetriever(Retriever):
    """Brute-force search over all item vectors, ``batch_size`` queries at a time."""

    def __init__(self, metric: str = "ip", batch_size: int = 1024) -> None:
        if metric not in ("ip", "l2", "cosine"):
            raise ValueError(f"metric must be 'ip', 'l2' or 'cosine', got {metric!r}")
        self.metric = metric
        self.batch_size = batch_size
        self._dim: int | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def _prepare(self, vectors: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
        array = as_matrix(vectors, self._dim, what)
        return normalise(array) if self.metric == "cosine" else array

    def build(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        array = as_matrix(vectors, None, "item vectors")
        new_ids = as_ids(ids, len(array))
        self._dim = array.shape[1]
        self._vectors = normalise(array) if self.metric == "cosine" else array.copy()
        self._ids = new_ids

    def add(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        if self._dim is None:
            self.build(vectors, ids)
            return
        array = self._prepare(vectors, "item vectors")
        new_ids = as_ids(ids, len(array))
        check_new_ids(new_ids, self._ids)
        self._vectors = np.concatenate([self._vectors, array])
        self._ids = np.concatenate([self._ids, new_ids])

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        gone = np.isin(self._ids, np.asarray(ids, dtype=np.int64).reshape(-1))
        self._vectors, self._ids = self._vectors[~gone], self._ids[~gone]
        return int(gone.sum())

    def _scores(self, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        scores = queries @ self._vectors.T
        if self.metric == "l2":
            # -(|q|² - 2 q·v + |v|²), higher is better
            scores = 2 * scores - (queries * queries).sum(1, keepdims=True) - (self._vectors**2).sum(1)[None, :]
        return scores.astype(np.float32, copy=False)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        k = check_k(k)
        if self._dim is None:
            raise DataError("the index is empty: call build() before search()")
        q = self._prepare(queries, "queries")
        rows = check_exclude(exclude, len(q))
        ids, best = empty_result(len(q), k)
        n = len(self._ids)
        if n == 0:
            return SearchResult(ids, best)
        take = min(k, n)
        position = None
        if rows is not None:
            order = np.argsort(self._ids, kind="stable")
            position = (order, self._ids[order])
        for start in range(0, len(q), self.batch_size):
            scores = self._scores(q[start : start + self.batch_size])
            if rows is not None and position is not None:
                order, sorted_ids = position
                for offset, banned in enumerate(rows[start : start + len(scores)]):
                    if len(banned):
                        at = np.minimum(np.searchsorted(sorted_ids, banned), n - 1)
                        scores[offset, order[at[sorted_ids[at] == banned]]] = -np.inf
            if take < n:
                part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            else:
                part = np.broadcast_to(np.arange(n), (len(scores), n))
            part_scores = np.take_along_axis(scores, part, axis=1)
            # best first; ties by insertion order (lexsort's last key is the primary one)
            rank = np.lexsort((part, -part_scores), axis=1)
            top = np.take_along_axis(part, rank, axis=1)
            top_scores = np.take_along_axis(part_scores, rank, axis=1)
            found_ids = np.where(np.isneginf(top_scores), -1, self._ids[top])
            ids[start : start + len(scores), :take] = found_ids
            best[start : start + len(scores), :take] = top_scores
        return SearchResult(ids, best)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "vectors.npy", lambda handle: np.save(handle, self._vectors, allow_pickle=False))
        atomic_write(directory / "ids.npy", lambda handle: np.save(handle, self._ids, allow_pickle=False))
        params = {"metric": self.metric, "batch_size": self.batch_size}
        write_manifest(directory, KIND, params, self._dim, len(self))

    @classmethod
    def load(cls, directory: Path) -> ExactRetriever:
        directory = Path(directory)
        manifest = read_manifest(directory, KIND, FILES)
        retriever = cls(**manifest["params"])
        try:
            vectors = np.load(directory / "vectors.npy", allow_pickle=False)
            ids = np.load(directory / "ids.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"the saved index is unreadable ({exc}); save it again", file=directory) from exc
        retriever._dim = manifest["dim"]
        retriever._vectors = vectors.astype(np.float32, copy=False).reshape(-1, manifest["dim"] or 0)
        retriever._ids = ids.astype(np.int64, copy=False)
        return retriever
