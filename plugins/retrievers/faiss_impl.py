"""A retriever over any FAISS index_factory string, with external ids, add/remove and checksummed save files.

- **Ids.** IVF indexes (also inside a pre-transform such as ``OPQ16_64,IVF4096,PQ16``) store external ids
  themselves; every other index is wrapped in ``IndexIDMap2``. (``IndexIDMap`` over IVF would corrupt the id map on
  removal: it assumes the wrapped index renumbers, which IVF does not.)
- **Exclusion** (a user's seen items) takes one of two paths; :attr:`FaissRetriever.exclusion_path` says which.

  - ``"selector"`` (CPU indexes that take one: Flat, HNSW, SQ and every IVF index, also behind a pre-transform
    such as OPQ): rows with nothing to exclude go through one batched plain search; every other row is one
    ``search()`` call whose search parameters hold an ``IDSelector`` rejecting that row's ids (a selector applies
    to a whole call, not to one row) and the index's configured nprobe / efSearch, which parameters passed with a
    call would otherwise reset to FAISS's defaults; :mod:`~fusionrec.plugins.retrievers.faiss_selector` builds
    them. On one FAISS thread the retrieval benchmark measured this faster than over-fetching (IVF and HNSW
    1.6–2.2×, Flat a tie at 100,000 items and faster below), with the same results. The per-row calls run one
    after another: with several FAISS threads a batched over-fetch would spread its rows over them, this does not.
  - ``"overfetch"`` (GPU indexes, which take no selector, and CPU indexes whose FAISS search rejects search
    parameters or a selector: PQ without IVF, fast-scan too, LSH, NSG, ``…,RFlat``): each batch is searched once
    for ``k + (longest exclude row)`` results and filtered; rows left with fewer than ``k`` are searched again,
    twice as wide, until they are full or the index has no more.

  Which path a CPU index takes is found at its first search with exclusions: one query is searched with a
  selector that excludes its nearest item; a FAISS error, or that item coming back, switches the index to
  over-fetching for good (a debug log says why). Both paths return the same: the ``k`` best unseen items, in
  FAISS's order.
- **Device.** The CPU index is the master copy: ``add``/``remove``/``save`` work on it (so a saved index is always
  a CPU index), and with a GPU a copy is made on first search and dropped on the next change. GPU functions are
  only called when ``faiss.get_num_gpus() > 0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import ConfigError, DataError
from fusionrec.core.io import atomic_path, atomic_write
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
from fusionrec.plugins.retrievers.faiss import PROBE_DIMS
from fusionrec.plugins.retrievers.faiss_selector import SelectorTarget

KIND = "faiss"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
GPU_MAX_K = 2048
"""FAISS GPU indexes return at most this many neighbours; wider searches run on the CPU copy."""
LOG = logging.getLogger(__name__)


def _reason(exc: Exception) -> str:
    return str(exc).rsplit("Error: ", 1)[-1].strip()


def faiss_threads() -> int:
    """The number of threads FAISS's OpenMP searches use (``OMP_NUM_THREADS``, ``faiss.omp_set_num_threads``)."""
    return max(1, int(faiss.omp_get_max_threads()))


def gpu_available() -> bool:
    """Whether faiss was built with GPU support and sees a CUDA device."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class FaissRetriever(Retriever):
    """Nearest-neighbour search with a FAISS index; see the module docstring for ids, exclusion and devices."""

    def __init__(
        self,
        index: str = "Flat",
        search: str = "",
        metric: str = "ip",
        device: str = "auto",
        threads: int | None = None,
        train_sample: int = 100_000,
        seed: int = 0,
    ) -> None:
        if metric not in ("ip", "l2", "cosine"):
            raise ConfigError.at(("metric",), f"must be 'ip', 'l2' or 'cosine', got {metric!r}")
        if device == "cuda" and not gpu_available():
            raise ConfigError.at(
                ("device",),
                "cuda was asked for but faiss sees no GPU (faiss-cpu is installed, or no CUDA device is "
                "visible); install faiss-gpu (the 'gpu' extra) or use device: auto",
            )
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError.at(("device",), f"must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.params: dict[str, Any] = {
            "index": index,
            "search": search,
            "metric": metric,
            "device": device,
            "threads": threads,
            "train_sample": train_sample,
            "seed": seed,
        }
        self.use_gpu = device == "cuda" or (device == "auto" and gpu_available())
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self._check_search_params()
        self._index: Any = None
        self._gpu_index: Any = None
        self._gpu_resources: Any = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._dim: int | None = None
        # whether the CPU index takes an IDSelector: None until the first search with exclusions probes it; False
        # forces over-fetching (the retrieval benchmark and the tests set it, to compare the two paths)
        self._selector: bool | None = None
        self._target: SelectorTarget | None = None  # built on first use, dropped on any change to the index

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def exclusion_path(self) -> str:
        """How seen items are excluded: ``"selector"``, ``"overfetch"``, or ``"untested"`` (a CPU index not yet
        searched with exclusions); see the module docstring."""
        if self.use_gpu or self._selector is False:
            return "overfetch"
        return "selector" if self._selector else "untested"

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def metric(self) -> str:
        return str(self.params["metric"])

    def _faiss_metric(self) -> int:
        return int(faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT)

    def _prepare(self, vectors: npt.ArrayLike, what: str, dim: int | None) -> npt.NDArray[np.float32]:
        array = as_matrix(vectors, dim, what)
        if self.metric == "cosine":
            array = array.copy()
            faiss.normalize_L2(array)
        return array

    def _new_index(self, dim: int) -> Any:
        spec = self.params["index"]
        try:
            index = faiss.index_factory(dim, spec, self._faiss_metric())
        except RuntimeError as exc:
            raise ConfigError.at(
                ("index",), f"FAISS cannot build the index {spec!r} for {dim}-dimensional vectors: {_reason(exc)}"
            ) from exc
        if faiss.try_extract_index_ivf(index) is None and not spec.replace(" ", "").startswith("IDMap"):
            index = faiss.IndexIDMap2(index)
        self._apply_search_params(index)
        return index

    def _apply_search_params(self, index: Any) -> None:
        search = self.params["search"]
        if not search:
            return
        try:
            faiss.ParameterSpace().set_index_parameters(index, search)
        except RuntimeError as exc:
            raise ConfigError.at(
                ("search",),
                f"FAISS cannot apply {search!r} to the index {self.params['index']!r}: {_reason(exc)}. "
                "IVF indexes take nprobe=…, HNSW takes efSearch=…",
            ) from exc

    def _check_search_params(self) -> None:
        """Apply ``search`` to an empty index of the same type now, so a typo fails before any vectors are seen."""
        if not self.params["search"]:
            return
        for dim in PROBE_DIMS:
            try:
                probe = faiss.index_factory(dim, self.params["index"], self._faiss_metric())
            except RuntimeError:
                continue
            self._apply_search_params(probe)
            return

    def _changed(self) -> None:
        self._gpu_index = None
        self._target = None

    def _new_master(self) -> None:
        """A new CPU index (built or loaded): whether it takes a selector is probed again."""
        self._selector, self._target = None, None

    def build(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        array = self._prepare(vectors, "item vectors", None)
        new_ids = as_ids(ids, len(array))
        dim = array.shape[1]
        index = self._new_index(dim)
        if not index.is_trained:
            size = min(int(self.params["train_sample"]), len(array))
            rng = np.random.default_rng(int(self.params["seed"]))
            sample = array[np.sort(rng.choice(len(array), size=size, replace=False))]
            try:
                index.train(sample)
            except RuntimeError as exc:
                raise ConfigError.at(
                    ("index",),
                    f"training the FAISS index {self.params['index']!r} on {size} vectors failed: {_reason(exc)}. "
                    "Use fewer IVF lists (about 4·√n) or more vectors",
                ) from exc
        index.add_with_ids(array, new_ids)
        self._index, self._ids, self._dim = index, new_ids, dim
        self._new_master()
        self._changed()

    def add(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        if self._index is None:
            self.build(vectors, ids)
            return
        array = self._prepare(vectors, "item vectors", self._dim)
        new_ids = as_ids(ids, len(array))
        check_new_ids(new_ids, self._ids)
        self._index.add_with_ids(array, new_ids)
        self._ids = np.concatenate([self._ids, new_ids])
        self._changed()

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        present = np.isin(self._ids, np.asarray(ids, dtype=np.int64).reshape(-1))
        if self._index is None or not present.any():
            return 0
        try:
            self._index.remove_ids(np.ascontiguousarray(self._ids[present]))
        except RuntimeError as exc:
            raise ConfigError.at(
                ("index",),
                f"the FAISS index {self.params['index']!r} cannot remove items ({_reason(exc)}): graph indexes "
                "(HNSW, NSG) do not support removal. Use Flat or an IVF index, or rebuild without those items",
            ) from exc
        self._ids = self._ids[~present]
        self._changed()
        return int(present.sum())

    def _searcher(self, fetch: int) -> Any:
        if not self.use_gpu or fetch > GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            try:
                gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
            except RuntimeError as exc:  # e.g. HNSW: FAISS has no GPU implementation of it
                logging.getLogger(__name__).warning(
                    "FAISS cannot move the index %r to the GPU (%s); searching it on the CPU",
                    self.params["index"],
                    _reason(exc),
                )
                self.use_gpu = False
                return self._index
            search = self.params["search"]
            if search:
                # GPU IVF indexes do not derive from the CPU ones: their parameters go through GpuParameterSpace
                space = getattr(faiss, "GpuParameterSpace", faiss.ParameterSpace)()
                try:
                    space.set_index_parameters(gpu_index, search)
                except RuntimeError as exc:
                    raise ConfigError.at(
                        ("search",),
                        f"FAISS cannot apply {search!r} to the GPU copy of {self.params['index']!r}: {_reason(exc)}",
                    ) from exc
            self._gpu_index = gpu_index
        return self._gpu_index

    def _raw_search(
        self, queries: npt.NDArray[np.float32], fetch: int, params: Any = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if params is None:
            distances, labels = self._searcher(fetch).search(queries, fetch)
        else:  # a selector: the CPU master copy only
            distances, labels = self._selector_target().search(queries, fetch, params)
        scores = -distances if self.metric == "l2" else distances
        scores = np.where(labels < 0, np.float32(-np.inf), scores).astype(np.float32)
        return labels.astype(np.int64), scores

    def _selector_target(self) -> SelectorTarget:
        """The index as selector searches see it, built on first use (and again after any change to the index)."""
        if self._target is None:
            self._target = SelectorTarget(self._index)
        return self._target

    def _selector_params(self, row: npt.NDArray[np.int64]) -> Any:
        """Search parameters for :meth:`_raw_search` that exclude the external ids ``row``."""
        return self._selector_target().params(row)

    def _selector_works(self, query: npt.NDArray[np.float32]) -> bool:
        """Probe once per index: a selector excluding ``query``'s nearest item is accepted and honoured."""
        nearest = self._raw_search(query, 1)[0][0]
        try:
            found = self._raw_search(query, min(2, len(self._ids)), self._selector_params(nearest[nearest >= 0]))[0]
        except RuntimeError as exc:  # e.g. PQ, LSH, NSG, refine: "search params not supported for this index"
            LOG.debug("FAISS index %r takes no IDSelector (%s); over-fetching", self.params["index"], _reason(exc))
            return False
        if np.isin(found, nearest[nearest >= 0]).any():
            LOG.debug("FAISS index %r ignores its IDSelector; over-fetching", self.params["index"])
            return False
        LOG.debug("FAISS index %r: excluding seen items with an IDSelector", self.params["index"])
        return True

    def _search_with_selectors(
        self,
        q: npt.NDArray[np.float32],
        k: int,
        rows: list[npt.NDArray[np.int64]],
        ids: npt.NDArray[np.int64],
        best: npt.NDArray[np.float32],
    ) -> None:
        """Rows with nothing to exclude in one plain batched call; each other row in one call with a selector."""
        fetch = min(k, len(self._ids))
        plain = np.asarray([row for row, banned in enumerate(rows) if not len(banned)], dtype=np.int64)
        if len(plain):
            labels, scores = self._raw_search(q[plain], fetch)
            ids[plain, :fetch], best[plain, :fetch] = labels, scores
        selected = [row for row, banned in enumerate(rows) if len(banned)]
        target = self._selector_target()  # built here, before any worker thread reads it

        def one(row: int) -> None:
            labels, scores = self._raw_search(q[row : row + 1], fetch, self._selector_params(rows[row]))
            ids[row, :fetch], best[row, :fetch] = labels[0], scores[0]

        # one query per call runs on one core. A scan of every item (Flat, SQ: the bitmap path) is worth a thread:
        # FAISS releases the GIL, so those calls are spread over FAISS's threads, as a batched over-fetch would
        # spread its queries. An IVF or HNSW query takes tens of microseconds, less than handing it to a thread
        # (benchmarks/retrieval_threads.py), so those stay in this thread.
        workers = min(len(selected), faiss_threads()) if target.kind == "bitmap" else 1
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, selected))
        else:
            for row in selected:
                one(row)

    def _overfetch(
        self,
        q: npt.NDArray[np.float32],
        k: int,
        rows: list[npt.NDArray[np.int64]],
        ids: npt.NDArray[np.int64],
        best: npt.NDArray[np.float32],
    ) -> None:
        """Search ``k`` + the longest exclude row, filter, and search rows left short again twice as wide."""
        n = len(self._ids)
        fetch = min(n, k + max(len(row) for row in rows))
        pending = np.arange(len(q))
        while len(pending):
            labels, scores = self._raw_search(q[pending], fetch)
            again = []
            for offset, row in enumerate(pending):
                keep = (labels[offset] >= 0) & ~np.isin(labels[offset], rows[row])
                kept = np.flatnonzero(keep)[:k]
                exhausted = fetch >= n or (labels[offset] < 0).any()
                if len(kept) < k and not exhausted:
                    again.append(row)
                    continue
                ids[row, : len(kept)] = labels[offset, kept]
                best[row, : len(kept)] = scores[offset, kept]
            pending = np.asarray(again, dtype=np.int64)
            fetch = min(n, fetch * 2)

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        k = check_k(k)
        if self._index is None:
            raise DataError("the index is empty: call build() before search()")
        q = self._prepare(queries, "queries", self._dim)
        rows = check_exclude(exclude, len(q))
        ids, best = empty_result(len(q), k)
        n = len(self._ids)
        if n == 0 or len(q) == 0:
            return SearchResult(ids, best)
        if rows is None:
            labels, scores = self._raw_search(q, min(k, n))
            ids[:, : labels.shape[1]], best[:, : labels.shape[1]] = labels, scores
            return SearchResult(ids, best)
        if not self.use_gpu and self._selector is None:
            self._selector = self._selector_works(q[:1])
        if self.use_gpu or not self._selector:
            self._overfetch(q, k, rows, ids, best)
        else:
            self._search_with_selectors(q, k, rows, ids, best)
        return SearchResult(ids, best)

    def search_prepared(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        """:meth:`search` without the input checks, copies and padded arrays (the caller guarantees the input).

        Searches FAISS with ``k`` directly (FAISS pads missing results with id -1, which become score -inf) and
        returns its arrays in place, distances negated for ``l2``. One query with exclusions goes straight to its
        selector search once the index is known to take one; other exclusions take :meth:`search`'s paths.
        """
        index, metric = self._index, self.params["metric"]
        if index is None:
            raise DataError("the index is empty: call build() before search()")
        if metric == "cosine":
            queries = queries.copy()
            faiss.normalize_L2(queries)
        if exclude is None or not any(len(row) for row in exclude):
            distances, labels = (self._searcher(k) if self.use_gpu else index).search(queries, k)
        elif len(queries) == 1 and self._selector and not self.use_gpu:
            banned = np.asarray(exclude[0], dtype=np.int64)
            distances, labels = self._selector_target().search(queries, k, self._selector_params(banned))
        else:
            return self.search(queries, k, exclude)
        if metric == "l2":
            np.negative(distances, out=distances)
        # FAISS puts missing results last; one row (serving) is checked without a numpy reduction
        rows = len(labels)
        if (labels[0, -1] < 0) if rows == 1 else (rows > 1 and labels[:, -1].min() < 0):
            distances[labels < 0] = -np.inf
        return SearchResult(labels, distances)

    def save(self, directory: Path) -> None:
        if self._index is None:
            raise DataError("nothing to save: build the index first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))  # the CPU master copy, never the GPU one
        atomic_write(directory / IDS_FILE, lambda handle: np.save(handle, self._ids, allow_pickle=False))
        write_manifest(directory, KIND, self.params, self._dim, len(self))

    @classmethod
    def load(cls, directory: Path) -> FaissRetriever:
        directory = Path(directory)
        manifest = read_manifest(directory, KIND, (INDEX_FILE, IDS_FILE))
        retriever = cls(**manifest["params"])
        try:
            index = faiss.read_index(str(directory / INDEX_FILE))
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
        except (RuntimeError, OSError, ValueError) as exc:
            raise DataError(f"the saved index is unreadable ({_reason(exc)}); save it again", file=directory) from exc
        if index.ntotal != len(ids) or index.d != manifest["dim"]:
            raise DataError(
                f"the saved index holds {index.ntotal} vectors of dimension {index.d}, the manifest says "
                f"{len(ids)} of dimension {manifest['dim']}; save it again",
                file=directory,
            )
        retriever._apply_search_params(index)
        retriever._index, retriever._ids, retriever._dim = index, ids.astype(np.int64), int(index.d)
        retriever._new_master()
        return retriever
