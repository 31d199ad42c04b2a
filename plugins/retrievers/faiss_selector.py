"""Searching a CPU FAISS index with one query's seen items excluded by an ``IDSelector``.

Search parameters passed with a call replace the index's own, so each selector goes out in the parameters of the
index's kind, carrying its configured values: ``SearchParametersIVF`` (nprobe, max_codes) for IVF indexes, also
behind a pre-transform; ``SearchParametersHNSW`` (efSearch, check_relative_distance, bounded queue) for HNSW;
plain ``SearchParameters`` otherwise. Where the selector is checked:

- **IVF** indexes store the external ids, and the selector is ``IDSelectorNot(IDSelectorBatch(seen))`` on them.
- **HNSW** (inside ``IndexIDMap2``): the same selector on external ids; ``IndexIDMap2`` translates it
  (``IDSelectorTranslated``) for the graph, which checks only the few nodes it visits.
- **Every other index inside ``IndexIDMap``/``IndexIDMap2``** (Flat, SQ, …) scans all its items, so the check
  runs once per item: the wrapped index is searched directly with an ``IDSelectorBitmap`` of the allowed internal
  positions (one bit test per item, instead of FAISS's translation, negation and hash look-up), and the labels are
  mapped back through the id map.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import numpy.typing as npt


class SelectorTarget:
    """Selector searches on one CPU index (``master``, the retriever's index); build a new one after any change."""

    def __init__(self, master: Any) -> None:
        self.index = master
        self.core: Any = None
        self.id_map: npt.NDArray[np.int64] | None = None
        ivf = faiss.try_extract_index_ivf(master)
        if ivf is not None:
            self.kind, self.core = "ivf", ivf
            return
        inner = master
        while isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexPreTransform):
            inner = faiss.downcast_index(inner.index)
        if isinstance(inner, faiss.IndexHNSW):
            self.kind, self.core = "hnsw", inner.hnsw
        elif isinstance(master, faiss.IndexIDMap | faiss.IndexIDMap2):
            self.kind, self.index = "bitmap", faiss.downcast_index(master.index)
            self.id_map = faiss.vector_to_array(master.id_map).astype(np.int64)
            self.order = np.argsort(self.id_map, kind="stable")
            self.sorted_ids = self.id_map[self.order]
            self.all_allowed = np.packbits(np.ones(len(self.id_map), dtype=bool), bitorder="little")
        else:
            self.kind = "plain"

    def selector(self, seen: npt.NDArray[np.int64]) -> Any:
        """An IDSelector that rejects the external ids ``seen`` (those not in the index are ignored)."""
        if self.id_map is None:
            return faiss.IDSelectorNot(faiss.IDSelectorBatch(seen))
        at = np.searchsorted(self.sorted_ids, seen).clip(max=len(self.sorted_ids) - 1)
        positions = self.order[at[self.sorted_ids[at] == seen]]
        bitmap = self.all_allowed.copy()
        np.bitwise_and.at(bitmap, positions >> 3, ~np.left_shift(1, positions & 7).astype(np.uint8))
        return faiss.IDSelectorBitmap(bitmap)

    def params(self, seen: npt.NDArray[np.int64]) -> Any:
        """Search parameters excluding the external ids ``seen`` and carrying the index's nprobe / efSearch, which
        parameters passed with a search would otherwise reset to FAISS's defaults."""
        selector = self.selector(seen)
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.core.nprobe, max_codes=self.core.max_codes)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(
                sel=selector,
                efSearch=self.core.efSearch,
                check_relative_distance=self.core.check_relative_distance,
                bounded_queue=self.core.search_bounded_queue,
            )
        return faiss.SearchParameters(sel=selector)

    def search(self, query: npt.NDArray[np.float32], fetch: int, params: Any) -> tuple[Any, Any]:
        """FAISS's ``(distances, labels)`` for ``query`` with ``params``, labels as external ids."""
        distances, labels = self.index.search(query, fetch, params=params)
        if self.id_map is not None:
            labels = np.where(labels >= 0, self.id_map[labels], -1)
        return distances, labels
