"""The ``popularity`` model: every user gets the items ranked by how often they occur in the known history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fusionrec.core.model import FitContext, Model
from fusionrec.plugins.models.common import (
    as_user_ids,
    check_fitted,
    history_counts,
    interaction_arrays,
    item_counts,
    load_files,
    save_files,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd


class PopularityModel(Model):
    """Most popular first: an item's score is its number of interactions in the history given to ``score``.

    The counts are taken from the history known at prediction time (train when validating, train + valid when
    testing), not frozen at fit time, so the test ranking counts the validation interactions too. Every user gets
    the same scores, new users included; the evaluation masks each user's own known items.
    """

    name = "popularity"

    def __init__(self) -> None:
        self.n_users = 0
        self.n_items = 0
        self.summary: dict[str, Any] = {}

    def fit(self, context: FitContext) -> dict[str, Any]:
        _, items = interaction_arrays(context.train, context.n_users, context.n_items, "train")
        self.n_users, self.n_items = context.n_users, context.n_items
        counts = item_counts(items, self.n_items)
        self.summary = {"interactions": len(items), "items_with_interactions": int((counts > 0).sum())}
        return dict(self.summary)

    def score(self, users: npt.NDArray[np.int64], history: pd.DataFrame) -> torch.Tensor:
        check_fitted(self.n_items > 0, self.name)
        rows = len(as_user_ids(users))
        return history_counts(history, self.n_items).unsqueeze(0).repeat(rows, 1)

    def save(self, directory: Path) -> None:
        check_fitted(self.n_items > 0, self.name)
        meta = {"params": {}, "n_users": self.n_users, "n_items": self.n_items, "summary": self.summary}
        save_files(directory, self.name, meta, {})

    @classmethod
    def load(cls, directory: Path) -> PopularityModel:
        meta, _ = load_files(directory, cls.name)
        model = cls(**meta["params"])
        model.n_users, model.n_items, model.summary = meta["n_users"], meta["n_items"], meta["summary"]
        return model
