"""The classifiers behind the built-in ``logistic`` and ``mlp`` rankers: P(relevant) = σ(f(x)).

``x = [user, item, user ⊙ item, modality weights, standardised retrieval score]`` for each (user, candidate) pair;
``user ⊙ item`` is included when the two have the same size (they do for dot-product retrieval). The sizes are
learned by :meth:`ClassifierRanker.fit` and checked by :meth:`~ClassifierRanker.score`. A retrieval score of
``-inf`` marks a padding pair (a retriever pads with ``-1`` ids and ``-inf`` scores when it finds fewer candidates
than asked for): fitting skips such pairs and scoring gives them 0. ``f`` is a linear layer
(``logistic``) or an MLP with ReLU and dropout (``mlp``), trained with binary cross-entropy on logits and AdamW,
full-batch or in shuffled mini-batches. Everything random (initialisation, shuffling, dropout) draws from one
``torch.Generator`` seeded with ``seed``, so the same data and parameters give the same ranker; fitting runs on
the CPU, scoring on the device the features are on.

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
from typing import Any, ClassVar, Self

import torch
from torch import nn

from fusionrec.core.errors import DataError, FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text, read_meta
from fusionrec.core.ranking import Ranker, RankingFeatures

log = logging.getLogger(__name__)

FORMAT = 1
STATE_FILE = "ranker.pt"
META_FILE = "ranker.json"


class NotFittedError(FusionrecError):
    """A ranker was asked to score or save before :meth:`~fusionrec.core.ranking.Ranker.fit`."""


@dataclass(frozen=True)
class InputLayout:
    """The sizes of a ranker's input, fixed by :meth:`ClassifierRanker.fit`.

    Attributes:
        user_dim: columns of the user vectors.
        item_dim: columns of the item vectors.
        n_modalities: columns of the modality weights.
        product: whether ``user ⊙ item`` is part of the input (``user_dim == item_dim``).
    """

    user_dim: int
    item_dim: int
    n_modalities: int
    product: bool

    @property
    def width(self) -> int:
        """Columns of the design matrix x."""
        return self.user_dim + self.item_dim + (self.item_dim if self.product else 0) + self.n_modalities + 1


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
        self.hidden = tuple(int(size) for size in hidden)
        self.dropout = float(dropout)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.layout: InputLayout | None = None
        self.network: Classifier | None = None
        self.score_mean = 0.0
        self.score_std = 1.0
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
            "seed": self.seed,
        }

    @property
    def fitted(self) -> bool:
        return self.network is not None

    def design(self, features: RankingFeatures) -> torch.Tensor:
        """The standardised design matrix x of ``features`` (``(n, width)`` float32, on their device)."""
        layout = self._require_fitted("score")
        user, item, weights, score = _columns(features)
        found = InputLayout(user.shape[1], item.shape[1], weights.shape[1], layout.product)
        if found != layout:
            raise DataError(
                f"the ranker was fitted on {_describe(layout)} but got {_describe(found)}; score features built "
                "by the same encoders, fuser and user tower it was fitted with"
            )
        standardised = torch.where(torch.isneginf(score), 0.0, (score - self.score_mean) / self.score_std)
        parts = [user, item, *([user * item] if layout.product else []), weights, standardised.unsqueeze(1)]
        return torch.cat(parts, dim=1)

    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        user, item, weights, score = (c.detach().to("cpu") for c in _columns(features))
        y = _labels(labels, len(score))
        real = ~torch.isneginf(score)  # -inf marks padding (fewer candidates than asked for): nothing to learn
        if not real.all():
            user, item, weights, score, y = (t[real] for t in (user, item, weights, score, y))
        n = len(score)
        if n == 0:
            raise DataError("no training pairs: fit() needs at least one (user, item) pair with a label")
        self.layout = InputLayout(user.shape[1], item.shape[1], weights.shape[1], user.shape[1] == item.shape[1])
        mean, std = float(score.mean()), float(score.std(unbiased=False))
        self.score_mean, self.score_std = mean, (std if std > 1e-6 else 1.0)
        generator = torch.Generator().manual_seed(self.seed)
        self.network = Classifier(self.layout.width, self.hidden, self.dropout)
        self.network.reset(generator)
        x = self.design(RankingFeatures(user, item, weights, score))
        optimiser = torch.optim.AdamW(self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        batch = n if self.batch_size is None else min(self.batch_size, n)
        self.network.train()
        self.losses = []
        for epoch in range(self.epochs):
            order = torch.randperm(n, generator=generator) if batch < n else None
            total = 0.0
            for start in range(0, n, batch):
                rows = order[start : start + batch] if order is not None else slice(None)
                logits = self.network(x[rows], generator)
                loss = nn.functional.binary_cross_entropy_with_logits(logits, y[rows])
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                total += float(loss.detach()) * len(logits)
            self.losses.append(total / n)
            log.debug("%s ranker: epoch %d/%d, loss %.4f", self.type_name, epoch + 1, self.epochs, self.losses[-1])
        self.network.eval()

    def score(self, features: RankingFeatures) -> torch.Tensor:
        network = self._network()
        x = self.design(features)
        if next(network.parameters()).device != x.device:
            network.to(x.device)
        with torch.no_grad():
            probability = torch.sigmoid(network(x))
        padding = torch.isneginf(features.retrieval_score.to(probability.device))
        return probability.masked_fill(padding, 0.0)

    def save(self, directory: Path) -> None:
        layout = self._require_fitted("save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().to("cpu").clone() for key, value in self._network().state_dict().items()}
        state["score_stats"] = torch.tensor([self.score_mean, self.score_std], dtype=torch.float64)
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
        meta_file = directory / META_FILE
        meta = read_meta(directory, META_FILE, what="ranker", fmt=FORMAT, expect={"type": cls.type_name})
        try:
            ranker = cls(**meta["params"])
            ranker.layout = InputLayout(**meta["layout"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DataError(f"unreadable ranker description ({exc}); save the ranker again", file=meta_file) from exc
        network = Classifier(ranker.layout.width, ranker.hidden, ranker.dropout)
        try:
            state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
            stats = state.pop("score_stats")
            network.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError, KeyError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            raise DataError(
                f"cannot load the ranker's weights ({exc}); save it again", file=directory / STATE_FILE
            ) from exc
        ranker.score_mean, ranker.score_std = float(stats[0]), float(stats[1])
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


class LogisticRanker(ClassifierRanker):
    """Logistic regression over user, item, their product, modality weights and retrieval score: P = σ(W·x + b)."""

    type_name = "logistic"

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 0.05,
        weight_decay: float = 1.0e-4,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed)

    def params(self) -> dict[str, Any]:
        params = super().params()
        del params["hidden"], params["dropout"]
        return params


class MLPRanker(ClassifierRanker):
    """An MLP classifier over user, item, their product, modality weights and retrieval score: P = σ(MLP(x))."""

    type_name = "mlp"

    def __init__(
        self,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        epochs: int = 20,
        lr: float = 3.0e-3,
        weight_decay: float = 1.0e-4,
        batch_size: int | None = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(
            hidden=hidden,
            dropout=dropout,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            seed=seed,
        )


def _columns(features: RankingFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four parts of ``features`` as float32 tensors, checked for shape, agreement and finiteness."""
    if not isinstance(features, RankingFeatures):
        raise DataError(f"expected RankingFeatures, got {type(features).__name__}")
    parts = {
        "user": features.user,
        "item": features.item,
        "modality_weights": features.modality_weights,
        "retrieval_score": features.retrieval_score,
    }
    out = []
    for name, value in parts.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"RankingFeatures.{name} must be a torch.Tensor, got {type(value).__name__}")
        want = 1 if name == "retrieval_score" else 2
        if value.dim() != want:
            shape = "(n,)" if want == 1 else "(n, columns)"
            raise DataError(f"RankingFeatures.{name} must have shape {shape}, got {tuple(value.shape)}")
        out.append(value.to(torch.float32))
    rows = {name: int(value.shape[0]) for name, value in parts.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"the parts of RankingFeatures disagree on the number of pairs: {rows}")
    for name, value in zip(parts, out, strict=True):
        if name == "retrieval_score":
            if torch.isnan(value).any() or torch.isposinf(value).any():
                raise DataError(f"RankingFeatures.{name} contains NaN or +inf (only -inf is allowed: it marks padding)")
        elif not torch.isfinite(value).all():
            raise DataError(f"RankingFeatures.{name} contains NaN or infinite values")
    user, item, weights, score = out
    return user, item, weights, score


def _labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``labels`` as a float32 ``(n,)`` tensor of 0s and 1s; a DataError otherwise."""
    y = torch.as_tensor(labels)
    if y.dim() != 1 or len(y) != n:
        raise DataError(f"labels must have shape ({n},), one per pair, got {tuple(y.shape)}")
    y = y.detach().to("cpu", torch.float32)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        found = sorted({float(v) for v in y[bad][:5]})
        raise DataError(f"labels must be 0 or 1 (1 = relevant), found {found} at {int(bad.sum())} of {n} pairs")
    return y


def _describe(layout: InputLayout) -> str:
    return (
        f"{layout.user_dim}-dim user vectors, {layout.item_dim}-dim item vectors and {layout.n_modalities} "
        "modality weights"
    )
