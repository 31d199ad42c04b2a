"""Checks shared by the built-in rankers: the parts of :class:`RankingFeatures` and the labels, as DataErrors.

Not a plugin module (it registers nothing); the ``*_impl`` modules of the rankers import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fusionrec.core.errors import DataError, FusionrecError
from fusionrec.core.io import read_meta
from fusionrec.core.ranking import RankingFeatures


class NotFittedError(FusionrecError):
    """A ranker was asked to score or save before :meth:`~fusionrec.core.ranking.Ranker.fit`."""


@dataclass(frozen=True)
class Columns:
    """The checked parts of :class:`RankingFeatures`, as float32 tensors on their device (groups: int64).

    Attributes:
        user: ``(n, user_dim)``.
        item: ``(n, item_dim)``.
        weights: ``(n, n_modalities)``.
        score: ``(n,)``; ``-inf`` marks padding.
        extra: ``(n, f)``, ``(n, 0)`` when the features have none.
        extra_names: the names of the ``extra`` columns.
        groups: ``(n,)`` query ids, or ``None``.
    """

    user: torch.Tensor
    item: torch.Tensor
    weights: torch.Tensor
    score: torch.Tensor
    extra: torch.Tensor
    extra_names: tuple[str, ...]
    groups: torch.Tensor | None

    def select(self, rows: torch.Tensor) -> Columns:
        """The rows ``rows`` (an index tensor or a boolean mask) of every part."""
        return Columns(
            self.user[rows],
            self.item[rows],
            self.weights[rows],
            self.score[rows],
            self.extra[rows],
            self.extra_names,
            None if self.groups is None else self.groups[rows],
        )

    def to(self, device: str | torch.device) -> Columns:
        """Every part on ``device``, detached."""
        moved = (t.detach().to(device) for t in (self.user, self.item, self.weights, self.score, self.extra))
        user, item, weights, score, extra = moved
        groups = None if self.groups is None else self.groups.detach().to(device)
        return Columns(user, item, weights, score, extra, self.extra_names, groups)


def columns(features: RankingFeatures) -> Columns:
    """The parts of ``features`` checked for type, shape, agreement and finiteness (only -inf scores allowed)."""
    if not isinstance(features, RankingFeatures):
        raise DataError(f"expected RankingFeatures, got {type(features).__name__}")
    parts = {
        "user": features.user,
        "item": features.item,
        "modality_weights": features.modality_weights,
        "retrieval_score": features.retrieval_score,
    }
    extra = getattr(features, "extra", None)
    groups = getattr(features, "groups", None)
    if extra is not None:
        parts["extra"] = extra
    if groups is not None:
        parts["groups"] = groups
    for name, value in parts.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"RankingFeatures.{name} must be a torch.Tensor, got {type(value).__name__}")
        want = 1 if name in ("retrieval_score", "groups") else 2
        if value.dim() != want:
            shape = "(n,)" if want == 1 else "(n, columns)"
            raise DataError(f"RankingFeatures.{name} must have shape {shape}, got {tuple(value.shape)}")
    rows = {name: int(value.shape[0]) for name, value in parts.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"the parts of RankingFeatures disagree on the number of pairs: {rows}")
    out = {name: value.to(torch.float32) for name, value in parts.items() if name != "groups"}
    for name, value in out.items():
        if name == "retrieval_score":
            if torch.isnan(value).any() or torch.isposinf(value).any():
                raise DataError(f"RankingFeatures.{name} contains NaN or +inf (only -inf is allowed: it marks padding)")
        elif not torch.isfinite(value).all():
            raise DataError(f"RankingFeatures.{name} contains NaN or infinite values")
    names = tuple(getattr(features, "extra_names", ()) or ())
    width = 0 if extra is None else int(extra.shape[1])
    if len(names) != width:
        raise DataError(
            f"RankingFeatures.extra_names names {len(names)} columns but extra has {width}; give one name per column"
        )
    if groups is not None and (groups.dtype.is_floating_point or groups.dtype == torch.bool):
        raise DataError(f"RankingFeatures.groups must hold integer query ids, got dtype {groups.dtype}")
    n = rows["retrieval_score"]
    return Columns(
        user=out["user"],
        item=out["item"],
        weights=out["modality_weights"],
        score=out["retrieval_score"],
        extra=out.get("extra", torch.zeros(n, 0, device=features.retrieval_score.device)),
        extra_names=names,
        groups=None if groups is None else groups.to(torch.int64),
    )


def labels_of(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``labels`` as a float32 ``(n,)`` CPU tensor of 0s and 1s; a DataError otherwise."""
    y = torch.as_tensor(labels)
    if y.dim() != 1 or len(y) != n:
        raise DataError(f"labels must have shape ({n},), one per pair, got {tuple(y.shape)}")
    y = y.detach().to("cpu", torch.float32)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        found = sorted({float(v) for v in y[bad][:5]})
        raise DataError(f"labels must be 0 or 1 (1 = relevant), found {found} at {int(bad.sum())} of {n} pairs")
    return y


def check_extra_names(fitted: tuple[str, ...], found: tuple[str, ...], ranker: str) -> None:
    """Raise a DataError when the extra columns scored are not those the ranker was fitted on."""
    if fitted != found:
        raise DataError(
            f"the {ranker} ranker was fitted on extra features {list(fitted)} but got {list(found)}; score "
            "features built the same way as the training pairs (same ranker-data settings and modalities)"
        )


def group_offsets(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stable order that makes each group's rows contiguous, and the size of each group in that order."""
    order = torch.argsort(groups, stable=True)
    _, sizes = torch.unique_consecutive(groups[order], return_counts=True)
    return order, sizes


def read_saved(cls: Any, directory: Path, meta_name: str, fmt: int, layout_type: Any) -> tuple[Any, Path]:
    """A ranker of class ``cls`` rebuilt from its saved description (parameters and input layout), and the
    description's path; the weights are the caller's to load.

    Raises:
        DataError: the folder holds no such ranker, or its description is unreadable.
    """
    meta_file = Path(directory) / meta_name
    meta = read_meta(directory, meta_name, what="ranker", fmt=fmt, expect={"type": cls.type_name})
    try:
        ranker = cls(**meta["params"])
        layout = dict(meta["layout"])
        layout["extra_names"] = tuple(str(name) for name in layout.get("extra_names", ()))
        ranker.layout = layout_type(**layout)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"unreadable ranker description ({exc}); save the ranker again", file=meta_file) from exc
    return ranker, meta_file
