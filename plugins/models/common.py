"""What the built-in models share: input checks, interaction arrays, popularity, and the saved-model files.

A saved model is a folder with ``state.pt`` (a flat dict of tensors, read back with ``torch.load(...,
weights_only=True)``, so nothing in it can run code) and ``model.json`` (format, model name, parameters, sizes and
the fit summary), both written atomically, ``model.json`` last: its presence marks a complete save.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.core.errors import FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text, read_meta

if TYPE_CHECKING:
    import pandas as pd

FORMAT = 1
META = "model.json"
STATE = "state.pt"

IntArray = npt.NDArray[np.int64]


def interaction_arrays(frame: pd.DataFrame, n_users: int, n_items: int, what: str) -> tuple[IntArray, IntArray]:
    """The ``user`` and ``item`` columns of ``frame`` as int64 arrays, checked against the id ranges.

    Raises:
        FusionrecError: a column is missing or an id is outside ``0..n-1`` (the data and the model disagree).
    """
    missing = [column for column in ("user", "item") if column not in frame.columns]
    if missing:
        raise FusionrecError(
            f"{what}: no column {', '.join(missing)} (found {', '.join(map(str, frame.columns)) or 'none'}); "
            "expected interactions with internal ids in columns user and item"
        )
    users = frame["user"].to_numpy(dtype=np.int64, copy=False)
    items = frame["item"].to_numpy(dtype=np.int64, copy=False)
    for name, ids, count in (("user", users, n_users), ("item", items, n_items)):
        if len(ids) and (ids.min() < 0 or ids.max() >= count):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise FusionrecError(
                f"{what}: {name} id {bad} is outside 0..{count - 1}: the interactions use more {name}s than the "
                f"model was given ({count}); fit the model on the same data it scores"
            )
    return users, items


def unique_pairs(users: IntArray, items: IntArray, n_items: int) -> tuple[IntArray, IntArray]:
    """The distinct (user, item) pairs, sorted by user then item."""
    keys = np.unique(users * n_items + items)
    return keys // n_items, keys % n_items


def item_counts(items: IntArray, n_items: int) -> torch.Tensor:
    """Interactions per item, ``(n_items,)`` float32."""
    return torch.from_numpy(np.bincount(items, minlength=n_items).astype(np.float32))


def as_user_ids(users: npt.ArrayLike) -> IntArray:
    """``users`` as a 1-d int64 array; a ValueError for negative ids."""
    array = np.array(users, dtype=np.int64).reshape(-1)  # a copy: torch.from_numpy needs a writable array
    if len(array) and array.min() < 0:
        raise ValueError(f"user ids must be non-negative, got {int(array.min())}")
    return array


def histories(users: IntArray, history: pd.DataFrame, n_items: int) -> tuple[IntArray, IntArray]:
    """The distinct items of each asked user's history, as (row, item) pairs: ``row`` indexes ``users``.

    Users may repeat in ``users``; each of their rows gets the same items. Users outside the history get none.
    """
    hist_users = history["user"].to_numpy(dtype=np.int64, copy=False)
    hist_items = history_items(history, n_items)
    asked, inverse = np.unique(users, return_inverse=True)
    keep = np.isin(hist_users, asked)
    pair_users, pair_items = unique_pairs(hist_users[keep], hist_items[keep], n_items)
    slot = np.searchsorted(asked, pair_users)  # which asked user each pair belongs to (sorted)
    starts = np.searchsorted(slot, np.arange(len(asked) + 1))  # pairs of asked user k: starts[k]..starts[k+1]
    counts = np.diff(starts)[inverse]  # items of each output row
    rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, pair_items[np.repeat(starts[inverse], counts) + offsets]


def history_counts(history: pd.DataFrame, n_items: int) -> torch.Tensor:
    """Interactions per item in ``history`` (the popularity known at prediction time), ``(n_items,)`` float32."""
    return item_counts(history_items(history, n_items), n_items)


def history_items(history: pd.DataFrame, n_items: int) -> IntArray:
    """The ``item`` column of a history, checked against the items the model was fitted on."""
    items: IntArray = history["item"].to_numpy(dtype=np.int64, copy=False)
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        bad = int(items.min()) if items.min() < 0 else int(items.max())
        raise FusionrecError(
            f"history: item id {bad} is outside 0..{n_items - 1}, the items the model was fitted on; score with "
            "the same data the model was fitted on"
        )
    return items


def check_fitted(fitted: bool, name: str) -> None:
    """A FusionrecError when the model has not been fitted (or loaded) yet."""
    if not fitted:
        raise FusionrecError(f"model '{name}' is not fitted: call fit(context) or load(directory) first")


def save_files(directory: Path, name: str, meta: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Write ``state.pt`` and then ``model.json`` into ``directory``, atomically."""
    directory = Path(directory)
    record = {"format": FORMAT, "model": name, **meta, "torch": torch.__version__}
    try:
        text = json.dumps(record, indent=2)
    except TypeError as exc:
        raise FusionrecError(f"model '{name}': its description is not JSON: {exc}") from exc
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in state.items()}
    atomic_write(directory / STATE, lambda handle: torch.save(tensors, handle))
    atomic_write_text(directory / META, text)


def load_files(directory: Path, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a model saved by :func:`save_files`: its description and its tensors (on the CPU).

    Raises:
        FusionrecError: nothing saved there, another model or format, or unreadable files.
    """
    directory = Path(directory)
    meta = read_meta(directory, META, what="model", fmt=FORMAT, expect={"model": name})
    try:
        state = torch.load(directory / STATE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise FusionrecError(f"{directory / STATE}: cannot load the model's tensors: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FusionrecError(f"{directory / STATE}: expected a dict of tensors")
    return meta, state
