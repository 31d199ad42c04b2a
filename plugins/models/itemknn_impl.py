"""The ``itemknn`` model: item-based k-nearest neighbours over the training interactions.

Fit: with U_i the set of training users of item i, the similarity of items i ≠ j is the cosine of their binary
user vectors, s(i, j) = |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink); for every item only its ``neighbours`` most
similar items (with s > 0) are kept, giving a sparse matrix S (row i: the neighbours of i). An item is never its
own neighbour.

Score: score(u, j) = Σ_{i ∈ H_u} S[i, j], with H_u the set of items in u's history as given to ``score`` (train for
validation, train + valid for test), so new interactions count without refitting. A user with an empty history
gets the popularity of the items in that history instead (their interaction counts), as the ``popularity`` model.

The co-occurrence counts are computed with torch sparse products in blocks of items, each block's dense
similarity rows bounded to :data:`BLOCK_ENTRIES` floats, so memory stays bounded on large catalogues.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fusionrec.core.errors import FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.plugins.models.common import (
    IntArray,
    as_user_ids,
    check_fitted,
    histories,
    history_counts,
    interaction_arrays,
    load_files,
    save_files,
    unique_pairs,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

BLOCK_ENTRIES = 1 << 24
"""Dense similarity entries computed at once while fitting (64 MiB of float32)."""


def csr(rows: IntArray, cols: IntArray, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A torch CSR matrix from (row, col, value) triples sorted by row."""
    crow = torch.from_numpy(np.searchsorted(rows, np.arange(shape[0] + 1)).astype(np.int64))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, torch.from_numpy(cols.astype(np.int64)), values, shape, check_invariants=False
        )


class ItemKNNModel(Model):
    """Item k-NN: a user's score of an item is the sum of its cosine similarities to the user's history items.

    Similarities are between the items' training user sets; each item keeps its ``neighbours`` most similar ones.
    """

    name = "itemknn"

    def __init__(self, neighbours: int = 100, shrink: float = 0.0) -> None:
        if neighbours < 1 or shrink < 0:
            raise ValueError(f"neighbours must be ≥ 1 and shrink ≥ 0, got {neighbours} and {shrink}")
        self.neighbours = neighbours
        self.shrink = shrink
        self.n_users = 0
        self.n_items = 0
        self.similarity: torch.Tensor | None = None  # transposed S, CSR: row j holds s(i, j) for the i with j kept
        self.summary: dict[str, Any] = {}

    def fit(self, context: FitContext) -> dict[str, Any]:
        start = time.perf_counter()
        users, items = interaction_arrays(context.train, context.n_users, context.n_items, "train")
        self.n_users, self.n_items = context.n_users, context.n_items
        rows, cols, values = self._neighbours(*unique_pairs(users, items, self.n_items))
        order = np.lexsort((rows, cols))  # S transposed, sorted by its rows (the neighbour j)
        self.similarity = csr(cols[order], rows[order], torch.from_numpy(values[order]), (self.n_items,) * 2)
        with_neighbours = len(np.unique(rows))
        self.summary = {
            "interactions": len(users),
            "similarities": len(values),
            "items_with_neighbours": with_neighbours,
            "mean_neighbours": round(len(values) / max(1, with_neighbours), 2),
            "seconds": round(time.perf_counter() - start, 3),
        }
        context.log({"epoch": 1, **self.summary})
        return dict(self.summary)

    def _neighbours(self, users: IntArray, items: IntArray) -> tuple[IntArray, IntArray, np.ndarray[Any, Any]]:
        """The kept similarities as (item, neighbour, value) triples, sorted by item."""
        n_users, n_items = self.n_users, self.n_items
        ones = torch.ones(len(users), dtype=torch.float32)
        user_items = csr(users, items, ones, (n_users, n_items))  # pairs are sorted by user
        order = np.lexsort((users, items))
        item_users_cols, item_rows = users[order], items[order]
        item_crow = np.searchsorted(item_rows, np.arange(n_items + 1))
        norms = torch.from_numpy(np.sqrt(np.bincount(items, minlength=n_items)).astype(np.float32))
        k = min(self.neighbours, n_items - 1)
        kept_rows, kept_cols, kept_values = [], [], []
        block = max(1, min(n_items, BLOCK_ENTRIES // max(1, n_items)))
        # two dense buffers reused by every block: fresh 64 MiB tensors per block cost more than the arithmetic
        counts_buffer, scale_buffer = torch.empty(block, n_items), torch.empty(block, n_items)
        for first in range(0, n_items if k > 0 else 0, block):
            last = min(n_items, first + block)
            a, b = item_crow[first], item_crow[last]
            if a == b:
                continue  # no item of this block has a training user
            # co-occurrence counts of the block's items with every item: X_blockᵀ X
            part = csr(item_rows[a:b] - first, item_users_cols[a:b], ones[a:b], (last - first, n_users))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                product = part @ user_items
            span = torch.arange(last - first)
            similarity = counts_buffer[: last - first].zero_()
            similarity[torch.repeat_interleave(span, product.crow_indices().diff()), product.col_indices()] = (
                product.values()
            )
            scale = torch.outer(norms[first:last], norms, out=scale_buffer[: last - first])
            similarity.div_(scale.add_(self.shrink).clamp_min_(1e-12))  # 0 where no common user
            similarity[span, span + first] = 0.0  # an item is not its own neighbour
            values, neighbours = torch.topk(similarity, k, dim=1)
            keep = values > 0
            kept_rows.append((span[:, None] + first).expand(-1, k)[keep].numpy())
            kept_cols.append(neighbours[keep].numpy())
            kept_values.append(values[keep].numpy())
        if not kept_rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        return (
            np.concatenate(kept_rows).astype(np.int64),
            np.concatenate(kept_cols).astype(np.int64),
            np.concatenate(kept_values).astype(np.float32),
        )

    def score(self, users: npt.NDArray[np.int64], history: pd.DataFrame) -> torch.Tensor:
        check_fitted(self.similarity is not None, self.name)
        assert self.similarity is not None
        asked = as_user_ids(users)
        rows, items = histories(asked, history, self.n_items)
        known = torch.zeros(self.n_items, len(asked))  # Hᵀ: column r marks the history items of asked user r
        known[torch.from_numpy(items), torch.from_numpy(rows)] = 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scores = (self.similarity @ known).T.contiguous()  # (Sᵀ Hᵀ)ᵀ = H S
        empty = torch.from_numpy(np.bincount(rows, minlength=len(asked)) == 0)
        if empty.any():
            scores[empty] = history_counts(history, self.n_items)
        return scores

    def save(self, directory: Path) -> None:
        check_fitted(self.similarity is not None, self.name)
        assert self.similarity is not None
        meta = {
            "params": {"neighbours": self.neighbours, "shrink": self.shrink},
            "n_users": self.n_users,
            "n_items": self.n_items,
            "summary": self.summary,
        }
        state = {
            "crow_indices": self.similarity.crow_indices(),
            "col_indices": self.similarity.col_indices(),
            "values": self.similarity.values(),
        }
        save_files(directory, self.name, meta, state)

    @classmethod
    def load(cls, directory: Path) -> ItemKNNModel:
        meta, state = load_files(directory, cls.name)
        model = cls(**meta["params"])
        model.n_users, model.n_items, model.summary = meta["n_users"], meta["n_items"], meta["summary"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                # checked: a corrupted file must be an error here, not a crash in a later sparse product
                model.similarity = torch.sparse_csr_tensor(
                    state["crow_indices"],
                    state["col_indices"],
                    state["values"],
                    (model.n_items, model.n_items),
                    check_invariants=True,
                )
        except (KeyError, RuntimeError, TypeError) as exc:
            raise FusionrecError(f"{directory}: the saved similarity matrix is invalid: {exc}") from exc
        return model
