"""The ``lightgbm`` ranker: LightGBM's ``lambdarank`` (or ``binary``) over (user, candidate) features.

The design matrix of each pair is ``[user, item, user ⊙ item, user · item, modality weights, retrieval score,
extra]`` (the product and inner product only when user and item vectors have the same size; the raw vectors and
product only with ``vectors: true``). The defaults (no raw vectors, 50 trees of 15 leaves, 50 pairs a leaf) won
on the quickstart data's validation (benchmarks/reranker_data.py). Trees need no standardisation, so columns go in
as they are. Pairs with a ``-inf`` retrieval score are padding: fitting skips them and scoring gives them 0.
``lambdarank`` learns within each group (:attr:`RankingFeatures.groups`, one per user list); without groups
every pair is in one list.

Scores are ``σ(margin)``: LightGBM's probability for ``binary``, an order-preserving squash of the ranking margin
for ``lambdarank``. Training is deterministic: ``deterministic=True``, ``force_col_wise=True``, a fixed
``num_threads`` and ``seed``.

A saved ranker is a folder with ``model.txt`` (LightGBM's own text model format, no pickle) and ``ranker.json``
(format, type, parameters, input layout, LightGBM's version), both written atomically, the JSON last.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.core.errors import DataError
from fusionrec.core.io import atomic_write_text
from fusionrec.core.ranking import Ranker, RankingFeatures
from fusionrec.plugins.rankers.ranker_inputs import (
    Columns,
    NotFittedError,
    check_extra_names,
    columns,
    labels_of,
    read_saved,
)

FORMAT = 1
MODEL_FILE = "model.txt"
META_FILE = "ranker.json"


@dataclass(frozen=True)
class TreeLayout:
    """The columns a :class:`LightGBMRanker` was fitted on.

    Attributes:
        user_dim: columns of the user vectors.
        item_dim: columns of the item vectors.
        n_modalities: columns of the modality weights.
        extra_names: names of the extra columns.
    """

    user_dim: int
    item_dim: int
    n_modalities: int
    extra_names: tuple[str, ...] = ()

    @property
    def product(self) -> bool:
        """Whether ``user ⊙ item`` and ``user · item`` are part of the input."""
        return self.user_dim == self.item_dim

    def feature_names(self, vectors: bool) -> list[str]:
        """One name per design-matrix column, as LightGBM records them."""
        names: list[str] = []
        if vectors:
            names += [f"user_{i}" for i in range(self.user_dim)] + [f"item_{i}" for i in range(self.item_dim)]
            names += [f"product_{i}" for i in range(self.item_dim)] if self.product else []
        names += ["dot"] if self.product else []
        names += [f"modality_weight_{i}" for i in range(self.n_modalities)] + ["retrieval_score"]
        return names + [f"extra_{name}" for name in self.extra_names]


class LightGBMRanker(Ranker):
    """Gradient-boosted trees (LightGBM lambdarank or binary) that rerank retrieved candidates."""

    type_name: ClassVar[str] = "lightgbm"

    def __init__(
        self,
        objective: Literal["lambdarank", "binary"] = "lambdarank",
        num_boost_round: int = 50,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 50,
        feature_fraction: float = 1.0,
        lambda_l2: float = 1.0,
        vectors: bool = False,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        if objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {objective!r}")
        if num_boost_round < 1 or learning_rate <= 0 or num_leaves < 2 or min_data_in_leaf < 1 or num_threads < 1:
            raise ValueError(
                "need num_boost_round ≥ 1, learning_rate > 0, num_leaves ≥ 2, min_data_in_leaf ≥ 1, num_threads ≥ 1"
            )
        if not 0 < feature_fraction <= 1 or lambda_l2 < 0:
            raise ValueError(f"need 0 < feature_fraction ≤ 1 and lambda_l2 ≥ 0, got {feature_fraction}, {lambda_l2}")
        self.objective = objective
        self.num_boost_round = int(num_boost_round)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_data_in_leaf = int(min_data_in_leaf)
        self.feature_fraction = float(feature_fraction)
        self.lambda_l2 = float(lambda_l2)
        self.vectors = bool(vectors)
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        self.layout: TreeLayout | None = None
        self.booster: Any = None

    def params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what ``ranker.json`` records)."""
        return {
            "objective": self.objective,
            "num_boost_round": self.num_boost_round,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "vectors": self.vectors,
            "num_threads": self.num_threads,
            "seed": self.seed,
        }

    def lightgbm_params(self) -> dict[str, Any]:
        """The parameters handed to ``lightgbm.train``."""
        return {
            "objective": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def design(self, c: Columns, layout: TreeLayout) -> npt.NDArray[np.float64]:
        """The design matrix of ``c`` (``(n, columns)`` float64, CPU) in :meth:`TreeLayout.feature_names` order."""
        user, item = c.user.detach().cpu().double(), c.item.detach().cpu().double()
        parts = [user, item, *([user * item] if layout.product else [])] if self.vectors else []
        if layout.product:
            parts.append((user * item).sum(dim=1, keepdim=True))
        parts += [c.weights.detach().cpu().double(), c.score.detach().cpu().double()[:, None]]
        parts.append(c.extra.detach().cpu().double())
        return torch.cat(parts, dim=1).numpy()

    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        import lightgbm

        c = columns(features).to("cpu")
        y = labels_of(labels, len(c.score))
        real = ~torch.isneginf(c.score)  # -inf marks padding: nothing to learn
        if not real.all():
            c, y = c.select(real), y[real]
        if len(y) == 0:
            raise DataError("no training pairs: fit() needs at least one (user, item) pair with a label")
        layout = TreeLayout(c.user.shape[1], c.item.shape[1], c.weights.shape[1], c.extra_names)
        x, group = self.design(c, layout), None
        if self.objective == "lambdarank":
            groups = c.groups if c.groups is not None else torch.zeros(len(y), dtype=torch.int64)
            order = torch.argsort(groups, stable=True)  # lambdarank needs each list's rows contiguous
            _, sizes = torch.unique_consecutive(groups[order], return_counts=True)
            x, y, group = x[order.numpy()], y[order], sizes.numpy()
        data = lightgbm.Dataset(
            x,
            label=y.numpy(),
            group=group,
            feature_name=layout.feature_names(self.vectors),
            params={"verbosity": -1, "num_threads": self.num_threads},
            free_raw_data=True,
        )
        try:
            self.booster = lightgbm.train(self.lightgbm_params(), data, num_boost_round=self.num_boost_round)
        except lightgbm.basic.LightGBMError as exc:
            raise DataError(f"LightGBM could not train the ranker: {exc}") from exc
        self.layout = layout

    def score(self, features: RankingFeatures) -> torch.Tensor:
        layout = self._require_fitted("score")
        c = columns(features)
        found = TreeLayout(c.user.shape[1], c.item.shape[1], c.weights.shape[1], layout.extra_names)
        if found != layout:
            raise DataError(
                f"the lightgbm ranker was fitted on {_describe(layout)} but got {_describe(found)}; score features "
                "built by the same encoders, fuser and user tower it was fitted with"
            )
        check_extra_names(layout.extra_names, c.extra_names, self.type_name)
        device = c.score.device
        if len(c.score) == 0:
            return torch.zeros(0, device=device)
        margin = self.booster.predict(self.design(c, layout), raw_score=True, num_threads=self.num_threads)
        probability = torch.sigmoid(torch.from_numpy(np.asarray(margin, dtype=np.float64))).to(torch.float32)
        return probability.to(device).masked_fill(torch.isneginf(c.score), 0.0)

    def save(self, directory: Path) -> None:
        import lightgbm

        layout = self._require_fitted("save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "type": self.type_name,
            "params": self.params(),
            "layout": asdict(layout),
            "lightgbm": lightgbm.__version__,
        }
        (directory / META_FILE).unlink(missing_ok=True)  # removed first, written last: it marks a complete save
        atomic_write_text(directory / MODEL_FILE, self.booster.model_to_string())
        atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Self:
        import lightgbm

        directory = Path(directory)
        ranker, _ = read_saved(cls, directory, META_FILE, FORMAT, TreeLayout)
        try:
            booster = lightgbm.Booster(model_str=(directory / MODEL_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
            raise DataError(
                f"cannot load the LightGBM model ({exc}); save it again", file=directory / MODEL_FILE
            ) from exc
        expected = ranker.layout.feature_names(ranker.vectors)
        if booster.feature_name() != expected:
            raise DataError(
                f"the LightGBM model has {booster.num_feature()} features, not the {len(expected)} its description "
                "names; save the ranker again",
                file=directory / MODEL_FILE,
            )
        ranker.booster = booster
        return ranker

    def _require_fitted(self, action: str) -> TreeLayout:
        if self.layout is None or self.booster is None:
            raise NotFittedError(f"the {self.type_name} ranker is not fitted: call fit() before {action}()")
        return self.layout


def _describe(layout: TreeLayout) -> str:
    return (
        f"{layout.user_dim}-dim user vectors, {layout.item_dim}-dim item vectors and {layout.n_modalities} "
        "modality weights"
    )


__all__ = ["LightGBMRanker", "TreeLayout"]
