"""The model interface: a whole recommender (the baselines, and any model that is not a two-tower).

A pipeline normally trains the two-tower model assembled from its ``fuser`` and ``user`` sections. A ``model``
section replaces it with a :class:`Model` plugin: popularity, ItemKNN, BPR-MF, LightGCN, VBPR, or a third party's.
Models are trained and scored by the same engine, on the same split, with the same metric code, so their numbers
compare with the two-tower's.

Refit (``train.refit``): after the model has been fitted on train, with validation choosing its number of epochs,
the engine builds a fresh model with the same parameters and fits it again on train + valid, with
:attr:`FitContext.epochs` set to that number (the ``best_epoch`` of the first fit's summary), and scores test with
it. A model with epochs trains exactly that many and must not call ``validate``; a model without epochs (fitted in
closed form) just fits on the longer ``train``. A model that cannot be refitted sets :attr:`Model.can_refit` to
false, and a pipeline asking for a refit of it is refused before training.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    import torch

ScoreFn = Callable[["npt.NDArray[np.int64]"], "torch.Tensor"]
"""``score(users) → (len(users), n_items)`` float scores, higher is better, for internal user ids."""


@dataclass
class FitContext:
    """Everything a model may learn from.

    Attributes:
        train: training interactions, columns ``user``, ``item``, ``timestamp``, ``rating`` (internal ids).
        n_users: number of users (internal ids ``0..n_users-1``).
        n_items: number of items (internal ids ``0..n_items-1``).
        features: modality key (as under ``encoders:``) → ``(vectors, present)``: ``(n_items, dim)`` float32 and
            ``(n_items,)`` bool. Empty when the pipeline has no encoders.
        validate: scores the model on the validation part: given a score function that ranks with the training
            history, returns the validation metrics (``{"recall@20": …, "ndcg@20": …}``). Use it for early
            stopping; never look at test. In a refit (:attr:`epochs` set) it raises: the model has seen validation.
        seed: seed for every random choice.
        device: ``"cpu"`` or ``"cuda"``.
        progress: whether to show progress bars.
        log: call with a dict per epoch (``{"epoch": 1, "loss": …, "valid": {...}}``); the engine records it.
        epochs: ``None``: an ordinary fit, validation chooses when to stop. Set: a refit, ``train`` is train + valid
            and the model trains exactly this many epochs (the ``best_epoch`` its first fit reported), without
            validating and without choosing among epochs (the last epoch's parameters). Models without epochs
            ignore it.
    """

    train: pd.DataFrame
    n_users: int
    n_items: int
    features: Mapping[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]]
    validate: Callable[[ScoreFn], dict[str, float]]
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    log: Callable[[dict[str, Any]], None] = field(default=lambda record: None)
    epochs: int | None = None


class Model(ABC):
    """A recommender trained on interactions (and, optionally, item features).

    Attributes:
        can_refit: whether :meth:`fit` honours a refit (:attr:`FitContext.epochs`, see the module's docstring).
            A model that trains in epochs and cannot train a given number of them without validating sets it
            false; ``train.refit: true`` is then refused with an error naming the model.
    """

    can_refit: ClassVar[bool] = True

    @abstractmethod
    def fit(self, context: FitContext) -> dict[str, Any]:
        """Train; return a summary (epochs run, best epoch, best validation metrics …), JSON-serialisable.

        A model that trains in epochs and chooses one on validation reports it as ``best_epoch`` (an int ≥ 1): a
        refit trains that many. In a refit (``context.epochs`` set) it reports ``epochs`` equal to
        ``context.epochs``.
        """

    @abstractmethod
    def score(self, users: npt.NDArray[np.int64], history: pd.DataFrame) -> torch.Tensor:
        """Scores of every item for each user.

        Args:
            users: internal user ids.
            history: the interactions known at prediction time (train for validation, train + valid for test),
                same columns as :attr:`FitContext.train`. Models that read histories use it, so a user's newest
                interactions count without retraining; the engine masks these items itself.

        Returns:
            ``(len(users), n_items)`` float tensor, higher is better.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted model into ``directory`` (safe formats only: no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Model:
        """Read a model written by :meth:`save`."""
