"""Training with the BPR loss, shared by ``bpr_mf``, ``lightgcn`` and ``vbpr``, and the ``bpr_mf`` model itself.

BPR (Rendle et al. 2009) maximises ln σ(x̂_ui − x̂_uj) over triples of a user u, an item i from u's training
interactions and an item j drawn uniformly from the items u has not interacted with. Each epoch visits every
distinct training (user, item) pair once, in a seeded random order, ``batch_size`` pairs per AdamW step, with one
negative per pair (redrawn, up to :data:`NEGATIVE_ROUNDS` times, while it is a known positive). The loss adds
``reg × ½‖θ_batch‖² / batch size``, the squared norm of the parameters the batch touches (users', items' and
negatives' embeddings and biases).

Every ``eval_every`` epochs the model is scored on the validation part (``context.validate``, ranking with the
training history) and the parameters with the best Recall@20 are kept; ``patience`` validations in a row without
improvement stop training. Each epoch is logged through ``context.log``. A refit (``context.epochs`` set: ``train``
is train + valid) trains exactly that many epochs without validating and keeps the last epoch's parameters; with
the same seed it draws the same initialisation, orders and negatives as a fit that stopped there.

Scores are inner products of a user's and an item's final vectors, plus an item bias where the model has one.
Users without a training interaction (and ids beyond those the model was fitted on) have no trained vector: they
get the popularity of the items in the history given to ``score`` instead (the ``popularity`` model's scores).
The history is otherwise not read: these models know what they learnt at fit time.
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from fusionrec.core.errors import FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.plugins.models.common import (
    IntArray,
    as_user_ids,
    check_fitted,
    history_counts,
    interaction_arrays,
    item_counts,
    load_files,
    save_files,
    unique_pairs,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

NEGATIVE_ROUNDS = 10
"""Times a negative that is a known positive of its user is redrawn (then kept: such users have seen nearly all)."""
INIT_STD = 0.01
"""Standard deviation of the normal initialisation of embeddings (as in the LightGCN reference code)."""
MONITOR = "recall@20"
"""The validation metric early stopping follows."""


@dataclass
class Factors:
    """What scoring needs: score(u, i) = user[u] · item[i] (+ bias[i])."""

    user: torch.Tensor
    item: torch.Tensor
    bias: torch.Tensor | None = None

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        out = self.user[users] @ self.item.T
        return out + self.bias if self.bias is not None else out

    def to(self, device: torch.device | str) -> Factors:
        bias = self.bias.to(device) if self.bias is not None else None
        return Factors(self.user.to(device), self.item.to(device), bias)


class BPRNetwork(nn.Module, ABC):
    """The trainable part of a BPR model."""

    @abstractmethod
    def forward(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores of (user, positive) and (user, negative), and ½ the squared norm of the parameters used."""

    @abstractmethod
    def factors(self) -> Factors:
        """The vectors (and biases) that score every user and item."""


def normal(rows: int, dim: int, generator: torch.Generator) -> nn.Parameter:
    """An embedding table initialised N(0, INIT_STD²) from ``generator``."""
    return nn.Parameter(torch.randn(rows, dim, generator=generator) * INIT_STD)


class NegativeSampler:
    """Uniform negatives, redrawn while they are a training positive of their user."""

    def __init__(self, users: IntArray, items: IntArray, n_items: int) -> None:
        self.n_items = n_items
        self.keys = torch.from_numpy(np.unique(users * n_items + items))

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        query = users * self.n_items + items
        found = torch.searchsorted(self.keys, query).clamp_max(len(self.keys) - 1)
        return self.keys[found] == query

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        negatives = torch.randint(self.n_items, (len(users),), generator=generator)
        for _ in range(NEGATIVE_ROUNDS):
            clash = self.is_positive(users, negatives)
            count = int(clash.sum())
            if count == 0:
                break
            negatives[clash] = torch.randint(self.n_items, (count,), generator=generator)
        return negatives


class BPRModel(Model):
    """A model trained with BPR; subclasses provide the network (:meth:`build_network`)."""

    name: ClassVar[str]

    def __init__(
        self,
        dim: int = 64,
        lr: float = 1.0e-3,
        epochs: int = 200,
        batch_size: int = 2048,
        weight_decay: float = 0.0,
        reg: float = 1.0e-4,
        patience: int = 10,
        eval_every: int = 1,
    ) -> None:
        self.dim, self.lr, self.epochs, self.batch_size = dim, lr, epochs, batch_size
        self.weight_decay, self.reg, self.patience, self.eval_every = weight_decay, reg, patience, eval_every
        self.n_users = 0
        self.n_items = 0
        self.trained = torch.zeros(0, dtype=torch.bool)  # users with a training interaction
        self.factors: Factors | None = None
        self.summary: dict[str, Any] = {}

    @property
    def params(self) -> dict[str, Any]:
        """The constructor's arguments (saved with the model; ``load`` rebuilds from them)."""
        return {
            "dim": self.dim,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "reg": self.reg,
            "patience": self.patience,
            "eval_every": self.eval_every,
        }

    @abstractmethod
    def build_network(
        self, context: FitContext, users: IntArray, items: IntArray, generator: torch.Generator
    ) -> BPRNetwork:
        """A freshly initialised network (parameters drawn from ``generator``) for the distinct training pairs."""

    def fit(self, context: FitContext) -> dict[str, Any]:
        start = time.perf_counter()
        users, items = interaction_arrays(context.train, context.n_users, context.n_items, "train")
        if len(users) == 0:
            raise FusionrecError(f"model '{self.name}': the training part has no interactions to learn from")
        refit = context.epochs is not None
        if context.epochs is not None and context.epochs < 1:
            raise FusionrecError(f"model '{self.name}': a refit needs at least one epoch, got {context.epochs}")
        epochs = context.epochs if context.epochs is not None else self.epochs
        self.n_users, self.n_items = context.n_users, context.n_items
        pair_users, pair_items = unique_pairs(users, items, self.n_items)
        self.trained = torch.zeros(self.n_users, dtype=torch.bool)
        self.trained[torch.from_numpy(pair_users)] = True
        popularity = item_counts(items, self.n_items)  # the validation history is the training part

        device = torch.device(context.device)
        generator = torch.Generator().manual_seed(context.seed)
        network = self.build_network(context, pair_users, pair_items, generator).to(device)
        optimiser = torch.optim.AdamW(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sampler = NegativeSampler(pair_users, pair_items, self.n_items)
        batch_users, batch_items = torch.from_numpy(pair_users), torch.from_numpy(pair_items)

        best_recall, best_epoch, best_valid = -math.inf, 0, {}
        best_state = copy.deepcopy(network.state_dict())
        epoch, stale, stopped = 0, 0, False
        for epoch in range(1, epochs + 1):
            tick = time.perf_counter()
            network.train()
            order = torch.randperm(len(pair_users), generator=generator)
            total = 0.0
            for first in range(0, len(order), self.batch_size):
                rows = order[first : first + self.batch_size]
                u = batch_users[rows]
                negatives = sampler.sample(u, generator)
                pos, neg, penalty = network(u.to(device), batch_items[rows].to(device), negatives.to(device))
                loss = -nn.functional.logsigmoid(pos - neg).mean() + self.reg * penalty / len(rows)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(rows)
            record: dict[str, Any] = {"epoch": epoch, "loss": total / len(order)}
            if not math.isfinite(record["loss"]):
                raise FusionrecError(
                    f"model '{self.name}': training diverged at epoch {epoch} (loss {record['loss']}); "
                    f"lower lr (now {self.lr})"
                )
            if not refit and (epoch % self.eval_every == 0 or epoch == self.epochs):
                network.eval()
                with torch.no_grad():
                    factors = network.factors().to("cpu")
                valid = self._validate(context, factors, popularity)
                record["valid"] = valid
                if valid[MONITOR] > best_recall:
                    best_recall, best_epoch, best_valid, stale = valid[MONITOR], epoch, valid, 0
                    best_state = copy.deepcopy(network.state_dict())
                else:
                    stale += 1
                    stopped = stale >= self.patience
            record["seconds"] = round(time.perf_counter() - tick, 3)
            context.log(record)
            if stopped:
                break

        if not refit:
            network.load_state_dict(best_state)
        network.eval()
        with torch.no_grad():
            self.factors = network.factors().to("cpu")
        self.summary = {"interactions": len(users), "pairs": len(pair_users), "epochs": epoch}
        if refit:
            self.summary["refit"] = True
        else:
            self.summary.update(best_epoch=best_epoch, best_valid=best_valid, stopped_early=stopped)
        self.summary["seconds"] = round(time.perf_counter() - start, 3)
        return copy.deepcopy(self.summary)

    def _validate(self, context: FitContext, factors: Factors, popularity: torch.Tensor) -> dict[str, float]:
        metrics = context.validate(lambda asked: self._scores(factors, asked, lambda: popularity))
        if MONITOR not in metrics:
            raise FusionrecError(
                f"model '{self.name}': early stopping follows the validation {MONITOR}, but validation returned "
                f"{', '.join(sorted(metrics)) or 'no metric'}"
            )
        return {name: float(value) for name, value in metrics.items()}

    def _scores(
        self, factors: Factors, users: npt.NDArray[np.int64], popularity: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        asked = torch.from_numpy(as_user_ids(users))
        inside = asked < self.n_users
        clipped = torch.where(inside, asked, torch.zeros_like(asked))
        scores = factors.scores(clipped)
        unknown = ~inside | ~self.trained[clipped]
        if unknown.any():
            scores[unknown] = popularity()
        return scores

    def score(self, users: npt.NDArray[np.int64], history: pd.DataFrame) -> torch.Tensor:
        check_fitted(self.factors is not None, self.name)
        assert self.factors is not None
        return self._scores(self.factors, users, lambda: history_counts(history, self.n_items))

    def save(self, directory: Path) -> None:
        check_fitted(self.factors is not None, self.name)
        assert self.factors is not None
        meta = {"params": self.params, "n_users": self.n_users, "n_items": self.n_items, "summary": self.summary}
        state = {"user": self.factors.user, "item": self.factors.item, "trained": self.trained}
        if self.factors.bias is not None:
            state["bias"] = self.factors.bias
        save_files(directory, self.name, meta, state)

    @classmethod
    def load(cls, directory: Path) -> BPRModel:
        meta, state = load_files(directory, cls.name)
        model = cls(**meta["params"])
        model.n_users, model.n_items, model.summary = meta["n_users"], meta["n_items"], meta["summary"]
        shapes = {key: tuple(value.shape) for key, value in state.items()}
        users, items = shapes.get("user", ()), shapes.get("item", ())
        if (
            len(users) != 2
            or users[0] != model.n_users
            or items != (model.n_items, users[1])
            or shapes.get("trained") != (model.n_users,)
            or shapes.get("bias", (model.n_items,)) != (model.n_items,)
        ):
            raise FusionrecError(
                f"{directory}: the saved tensors {shapes} do not fit {model.n_users} users and {model.n_items} items"
            )
        model.trained = state["trained"].to(torch.bool)
        model.factors = Factors(state["user"], state["item"], state.get("bias"))
        return model


class MFNetwork(BPRNetwork):
    """p_u · q_i."""

    def __init__(self, n_users: int, n_items: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.user = normal(n_users, dim, generator)
        self.item = normal(n_items, dim, generator)

    def forward(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, i, j = self.user[users], self.item[positives], self.item[negatives]
        penalty = 0.5 * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum())
        return (u * i).sum(-1), (u * j).sum(-1), penalty

    def factors(self) -> Factors:
        return Factors(self.user.detach().clone(), self.item.detach().clone())


class BPRMFModel(BPRModel):
    """Matrix factorisation with the BPR loss: score(u, i) = p_u · q_i (Rendle et al. 2009)."""

    name = "bpr_mf"

    def build_network(
        self, context: FitContext, users: IntArray, items: IntArray, generator: torch.Generator
    ) -> BPRNetwork:
        return MFNetwork(context.n_users, context.n_items, self.dim, generator)
