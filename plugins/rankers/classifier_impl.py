"""The classifiers behind the built-in ``logistic`` and ``mlp`` rankers: P(relevant) = σ(f(x)).

``x = [user, item, user ⊙ item, modality weights, standardised retrieval score, standardised extra]`` for each
(user, candidate) pair; ``user ⊙ item`` is included when the two have the same size (they do for dot-product
retrieval), and ``extra`` when the features carry extra columns (:attr:`RankingFeatures.extra`: popularity,
recency, per-modality similarities …). The sizes and extra column names are learned by
:meth:`ClassifierRanker.fit` and checked by :meth:`~ClassifierRanker.score`. A retrieval score of ``-inf`` marks a
padding pair (a retriever pads with ``-1`` ids and ``-inf`` scores when it finds fewer candidates than asked for):
fitting skips such pairs and scoring gives them 0. ``f`` is a linear layer (``logistic``) or an MLP with ReLU and
dropout (``mlp``), trained with AdamW, full-batch or in shuffled mini-batches, on one of two objectives:

- ``pointwise`` (the seed's): binary cross-entropy on logits over every pair;
- ``pairwise`` (BPR): ``-log σ(f(x⁺) − f(x⁻))`` for each positive and a negative drawn, each epoch, from the same
  group (:attr:`RankingFeatures.groups`, one per user list; all pairs form one group when there are none).
  Positives without a negative in their group are skipped.

Everything random (initialisation, shuffling, negatives, dropout) draws from one ``torch.Generator`` seeded with
``seed``, so the same data and parameters give the same ranker; fitting runs on the CPU, scoring on the device the
features are on.

A saved ranker is a folder with ``ranker.pt`` (the state dict, read back with ``weights_only=True``) and
``ranker.json`` (format, type, parameters, input sizes), both written atomically, the JSON last.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import torch
from torch import nn

from fusionrec.core.errors import DataError
from fusionrec.core.io import atomic_write, atomic_write_text
from fusionrec.core.ranking import Ranker, RankingFeatures
from fusionrec.plugins.rankers.ranker_inputs import (
    Columns,
    NotFittedError,
    check_extra_names,
    columns,
    group_offsets,
    labels_of,
    read_saved,
)

log = logging.getLogger(__name__)

FORMAT = 1
STATE_FILE = "ranker.pt"
META_FILE = "ranker.json"
Objective = Literal["pointwise", "pairwise"]


@dataclass(frozen=True)
class InputLayout:
    """The sizes of a ranker's input, fixed by :meth:`ClassifierRanker.fit`.

    Attributes:
        user_dim: columns of the user vectors.
        item_dim: columns of the item vectors.
        n_modalities: columns of the modality weights.
        product: whether ``user ⊙ item`` is part of the input (``user_dim == item_dim``).
        extra_names: the names of the extra columns (empty: none).
    """

    user_dim: int
    item_dim: int
    n_modalities: int
    product: bool
    extra_names: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Columns of the design matrix x."""
        base = self.user_dim + self.item_dim + (self.item_dim if self.product else 0) + self.n_modalities + 1
        return base + len(self.extra_names)


class Classifier(nn.Module):
    """Linear layers with ReLU between them and dropout after each hidden activation; one logit out.

    Dropout draws its masks from the generator passed to :meth:`forward`, not from torch's global generator.
    """

    def __init__(self, width: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        sizes = [width, *hidden, 1]
        # skip_init: the weights are drawn in reset() from the ranker's own generator, not the global one
        layers = [nn.utils.skip_init(nn.Linear, n_in, n_out) for n_in, n_out in itertools.pairwise(sizes)]  # type: ignore[no-untyped-call]
        self.layers = nn.ModuleList(layers)
        self.dropout = dropout

    def reset(self, generator: torch.Generator) -> None:
        """Draw every weight and bias from U(-1/√fan_in, 1/√fan_in), torch's default for ``nn.Linear``."""
        with torch.no_grad():
            for layer in self.layers:
                assert isinstance(layer, nn.Linear)
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n,)`` logits; with a ``generator`` (training), dropout is applied with masks drawn from it."""
        *hidden, last = self.layers
        for layer in hidden:
            x = torch.relu(layer(x))
            if generator is not None and self.dropout > 0:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return last(x).squeeze(-1)  # type: ignore[no-any-return]


class ClassifierRanker(Ranker):
    """A reranker that is a binary classifier over (user, candidate item) features; see the module docstring."""

    type_name: ClassVar[str] = ""
    """The registered name, recorded in ``ranker.json`` and checked on load."""

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
        epochs: int = 100,
        lr: float = 0.05,
        weight_decay: float = 1.0e-4,
        batch_size: int | None = None,
        objective: Objective = "pointwise",
        seed: int = 0,
    ) -> None:
        if any(size <= 0 for size in hidden):
            raise ValueError(f"hidden sizes must be positive, got {list(hidden)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if epochs < 1 or lr <= 0 or weight_decay < 0 or (batch_size is not None and batch_size < 1):
            raise ValueError(
                f"need epochs ≥ 1, lr > 0, weight_decay ≥ 0 and batch_size ≥ 1 or None; got epochs={epochs}, "
                f"lr={lr}, weight_decay={weight_decay}, batch_size={batch_size}"
            )
        if objective not in ("pointwise", "pairwise"):
            raise ValueError(f"objective must be 'pointwise' or 'pairwise', got {objective!r}")
        self.hidden = tuple(int(size) for size in hidden)
        self.dropout = float(dropout)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = batch_size
        self.objective: Objective = objective
        self.seed = int(seed)
        self.layout: InputLayout | None = None
        self.network: Classifier | None = None
        self.score_mean = 0.0
        self.score_std = 1.0
        self.extra_mean = torch.zeros(0)
        self.extra_std = torch.ones(0)
        self.losses: list[float] = []
        """Mean training loss of each epoch of the last :meth:`fit`."""

    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``ranker.json`` records)."""
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "objective": self.objective,
            "seed": self.seed,
        }

    @property
    def fitted(self) -> bool:
        return self.network is not None

    def design(self, features: RankingFeatures | Columns) -> torch.Tensor:
        """The standardised design matrix x of ``features`` (``(n, width)`` float32, on their device)."""
        layout = self._require_fitted("score")
        c = features if isinstance(features, Columns) else columns(features)
        found = InputLayout(c.user.shape[1], c.item.shape[1], c.weights.shape[1], layout.product, layout.extra_names)
        if found != layout:
            raise DataError(
                f"the ranker was fitted on {_describe(layout)} but got {_describe(found)}; score features built "
                "by the same encoders, fuser and user tower it was fitted with"
            )
        check_extra_names(layout.extra_names, c.extra_names, self.type_name)
        standardised = torch.where(torch.isneginf(c.score), 0.0, (c.score - self.score_mean) / self.score_std)
        extra = (c.extra - self.extra_mean.to(c.extra.device)) / self.extra_std.to(c.extra.device)
        parts = [c.user, c.item, *([c.user * c.item] if layout.product else []), c.weights, standardised[:, None]]
        return torch.cat([*parts, extra], dim=1)

    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        c = columns(features).to("cpu")
        y = labels_of(labels, len(c.score))
        real = ~torch.isneginf(c.score)  # -inf marks padding (fewer candidates than asked for): nothing to learn
        if not real.all():
            c, y = c.select(real), y[real]
        n = len(c.score)
        if n == 0:
            raise DataError("no training pairs: fit() needs at least one (user, item) pair with a label")
        self.layout = InputLayout(
            c.user.shape[1], c.item.shape[1], c.weights.shape[1], c.user.shape[1] == c.item.shape[1], c.extra_names
        )
        mean, std = float(c.score.mean()), float(c.score.std(unbiased=False))
        self.score_mean, self.score_std = mean, (std if std > 1e-6 else 1.0)
        self.extra_mean, self.extra_std = torch.zeros(c.extra.shape[1]), torch.ones(c.extra.shape[1])
        if c.extra.shape[1]:
            spread = c.extra.std(dim=0, unbiased=False)
            self.extra_mean, self.extra_std = c.extra.mean(dim=0), torch.where(spread > 1e-6, spread, 1.0)
        generator = torch.Generator().manual_seed(self.seed)
        self.network = Classifier(self.layout.width, self.hidden, self.dropout)
        self.network.reset(generator)
        x = self.design(c)
        optimiser = torch.optim.AdamW(self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.network.train()
        self.losses = []
        for epoch in range(self.epochs):
            if self.objective == "pairwise":
                loss = self._pairwise_epoch(x, y, c.groups, optimiser, generator)
            else:
                loss = self._pointwise_epoch(x, y, optimiser, generator)
            self.losses.append(loss)
            log.debug("%s ranker: epoch %d/%d, loss %.4f", self.type_name, epoch + 1, self.epochs, loss)
        self.network.eval()

    def _pointwise_epoch(
        self, x: torch.Tensor, y: torch.Tensor, optimiser: torch.optim.Optimizer, generator: torch.Generator
    ) -> float:
        """One pass of binary cross-entropy over every pair; the mean loss."""
        network = self._network()
        n = len(y)
        batch = n if self.batch_size is None else min(self.batch_size, n)
        order = torch.randperm(n, generator=generator) if batch < n else None
        total = 0.0
        for start in range(0, n, batch):
            rows = order[start : start + batch] if order is not None else slice(None)
            logits = network(x[rows], generator)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y[rows])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += float(loss.detach()) * len(logits)
        return total / n

    def _pairwise_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        optimiser: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> float:
        """One pass of BPR over (positive, negative from the same group) pairs; the mean loss."""
        network = self._network()
        positives, negatives = sample_pairs(y, groups, generator)
        n = len(positives)
        if n == 0:
            raise DataError(
                "the pairwise objective needs a group holding both a positive and a negative pair; none has both "
                "(give RankingFeatures.groups one id per user list, or use objective: pointwise)"
            )
        batch = n if self.batch_size is None else min(self.batch_size, n)
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            margin = network(x[positives[rows]], generator) - network(x[negatives[rows]], generator)
            loss = -nn.functional.logsigmoid(margin).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        return total / n

    def score(self, features: RankingFeatures) -> torch.Tensor:
        network = self._network()
        c = columns(features)
        x = self.design(c)
        if next(network.parameters()).device != x.device:
            network.to(x.device)
        with torch.no_grad():
            probability = torch.sigmoid(network(x))
        return probability.masked_fill(torch.isneginf(c.score), 0.0)

    def save(self, directory: Path) -> None:
        layout = self._require_fitted("save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().to("cpu").clone() for key, value in self._network().state_dict().items()}
        state["score_stats"] = torch.tensor([self.score_mean, self.score_std], dtype=torch.float64)
        state["extra_stats"] = torch.stack([self.extra_mean, self.extra_std]).to(torch.float32)
        meta = {
            "format": FORMAT,
            "type": self.type_name,
            "params": self.params(),
            "layout": asdict(layout),
            "torch": torch.__version__,
        }
        (directory / META_FILE).unlink(missing_ok=True)  # removed first, written last: it marks a complete save
        atomic_write(directory / STATE_FILE, lambda handle: torch.save(state, handle))
        atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        ranker, _ = read_saved(cls, directory, META_FILE, FORMAT, InputLayout)
        network = Classifier(ranker.layout.width, ranker.hidden, ranker.dropout)
        try:
            state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
            stats = state.pop("score_stats")
            width = len(ranker.layout.extra_names)
            extra_stats = state.pop("extra_stats", torch.stack([torch.zeros(width), torch.ones(width)]))
            network.load_state_dict(state, strict=True)
            if tuple(extra_stats.shape) != (2, width):
                raise ValueError(f"extra_stats has shape {tuple(extra_stats.shape)}, expected (2, {width})")
        except (OSError, RuntimeError, ValueError, KeyError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            raise DataError(
                f"cannot load the ranker's weights ({exc}); save it again", file=directory / STATE_FILE
            ) from exc
        ranker.score_mean, ranker.score_std = float(stats[0]), float(stats[1])
        ranker.extra_mean, ranker.extra_std = extra_stats[0].float(), extra_stats[1].float()
        ranker.network = network.eval()
        return ranker

    def _require_fitted(self, action: str) -> InputLayout:
        if self.layout is None or self.network is None:
            raise NotFittedError(f"the {self.type_name} ranker is not fitted: call fit() before {action}()")
        return self.layout

    def _network(self) -> Classifier:
        self._require_fitted("score")
        assert self.network is not None
        return self.network


def sample_pairs(
    labels: torch.Tensor, groups: torch.Tensor | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each positive row whose group has a negative, that row and a negative row drawn uniformly from its group.

    Args:
        labels: ``(n,)`` 0/1 labels.
        groups: ``(n,)`` query ids, or ``None`` (one group).
        generator: the source of the draws.

    Returns:
        Two ``(p,)`` int64 tensors of row indices: positives and their negatives.
    """
    n = len(labels)
    groups = torch.zeros(n, dtype=torch.int64) if groups is None else groups.to("cpu", torch.int64)
    order, sizes = group_offsets(groups)
    group_of_row = torch.empty(n, dtype=torch.int64)
    group_of_row[order] = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    negative_rows = order[labels[order] == 0]  # negatives, grouped by group (order keeps groups contiguous)
    negative_counts = torch.bincount(group_of_row[negative_rows], minlength=len(sizes))
    negative_starts = torch.cumsum(negative_counts, 0) - negative_counts
    positive_rows = torch.nonzero(labels == 1).flatten()
    positive_groups = group_of_row[positive_rows]
    usable = negative_counts[positive_groups] > 0
    positive_rows, positive_groups = positive_rows[usable], positive_groups[usable]
    draws = torch.rand(len(positive_rows), generator=generator, dtype=torch.float64)
    picks = (draws * negative_counts[positive_groups]).long().clamp(max=negative_counts[positive_groups] - 1)
    return positive_rows, negative_rows[negative_starts[positive_groups] + picks]


class LogisticRanker(ClassifierRanker):
    """Logistic regression over user, item, their product, modality weights, retrieval score, extra: P = σ(W·x + b)."""

    type_name = "logistic"

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 0.05,
        weight_decay: float = 1.0e-4,
        batch_size: int | None = None,
        objective: Objective = "pointwise",
        seed: int = 0,
    ) -> None:
        super().__init__(
            epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, objective=objective, seed=seed
        )

    def params(self) -> dict[str, Any]:
        params = super().params()
        del params["hidden"], params["dropout"]
        return params


class MLPRanker(ClassifierRanker):
    """An MLP classifier over user, item, their product, modality weights, retrieval score, extra: P = σ(MLP(x))."""

    type_name = "mlp"

    def __init__(
        self,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        epochs: int = 20,
        lr: float = 3.0e-3,
        weight_decay: float = 1.0e-4,
        batch_size: int | None = 256,
        objective: Objective = "pointwise",
        seed: int = 0,
    ) -> None:
        super().__init__(
            hidden=hidden,
            dropout=dropout,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            objective=objective,
            seed=seed,
        )


def _describe(layout: InputLayout) -> str:
    return (
        f"{layout.user_dim}-dim user vectors, {layout.item_dim}-dim item vectors and {layout.n_modalities} "
        "modality weights"
    )
