"""The retriever interface: top-N nearest items for query vectors, addressed by external item ids."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class SearchResult(NamedTuple):
    """Search results, best first.

    Attributes:
        ids: ``(n_queries, k)`` int64 external ids; ``-1`` pads rows with fewer than ``k`` results.
        scores: ``(n_queries, k)`` float32 similarities (higher is better; ``-inf`` for padding).
    """

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


class Retriever(ABC):
    """A nearest-neighbour index over item vectors.

    Factories are called as ``factory(**params)``; the dimension is fixed by the first :meth:`build`.
    """

    @property
    @abstractmethod
    def dim(self) -> int | None:
        """Vector size, or ``None`` before :meth:`build`."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of indexed items."""

    @abstractmethod
    def build(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        """Replace the index contents with ``vectors`` (``(n, dim)``) under external ``ids`` (``(n,)``, unique)."""

    @abstractmethod
    def add(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        """Add items; an id already present is an error."""

    @abstractmethod
    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        """Remove items by id; returns how many were present."""

    @abstractmethod
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        """Top-``k`` items for each query row, never returning an id listed in that row's ``exclude``."""

    def search_prepared(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        """:meth:`search` for callers that guarantee their input, so a retriever may skip its checks and copies.

        The caller guarantees: ``queries`` is a C-contiguous float32 ``(n, dim)`` array of finite values that the
        retriever may not keep (the engine's user-tower output), ``k >= 1``, and each ``exclude`` row an int64
        array. Results are the same as :meth:`search`'s. Vectors from users, files or requests go through
        :meth:`search`, which checks them. Default: :meth:`search`.
        """
        return self.search(queries, k, exclude)

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the index and its id mapping into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Retriever:
        """Read an index written by :meth:`save`."""
