"""The data model every dataset plugin produces, and the dataset and split protocols."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd


@dataclass
class InteractionData:
    """One catalogue with its interactions, in contiguous integer ids.

    Attributes:
        items: one row per item, indexed ``0..n_items-1`` in column ``item``; text fields as string columns,
            ``image`` the image path or ``None``.
        interactions: columns ``user``, ``item`` (internal ids), ``timestamp`` (int64 seconds), ``rating``
            (float, NaN when unknown).
        user_ids: original user id of each internal user id.
        item_ids: original item id of each internal item id.
        text_fields: names of the ``items`` columns that hold text.
        report: rows read, kept and dropped per reason, from loading.
    """

    items: pd.DataFrame
    interactions: pd.DataFrame
    user_ids: npt.NDArray[np.generic]
    item_ids: npt.NDArray[np.generic]
    text_fields: tuple[str, ...] = ()
    report: dict[str, object] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass
class SplitData:
    """Interactions split for training and evaluation (rows of :attr:`InteractionData.interactions`).

    Attributes:
        candidate_items: internal ids that evaluation ranks among (``None``: all items); the cold-item protocol
            ranks among the held-out items only.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    candidate_items: npt.NDArray[np.int64] | None = None


@runtime_checkable
class Dataset(Protocol):
    """A source of items and interactions. Factories are called as ``factory(**params)``."""

    def load(self) -> InteractionData:
        """Read the data, reporting (not silently dropping) every bad row."""
        ...


@runtime_checkable
class Split(Protocol):
    """A protocol that divides interactions into train, validation and test."""

    def split(self, data: InteractionData) -> SplitData:
        """Split ``data``; the same parameters (seed included) always give the same split."""
        ...
