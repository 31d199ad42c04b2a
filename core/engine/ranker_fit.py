"""Fitting the reranker and judging it honestly: the seed's classifier P = σ(W·F + b), or any ranker plugin, over
the retriever's own candidates.

The ranker learns from a time slice of the training data (:mod:`~fusionrec.core.engine.ranker_data`): each
training user's last ``evaluate.ranker_holdout`` interactions are the labels, the candidates the model's own top-N
for the history before them (so the negatives are the hard ones it meets when serving), and the features those
the retriever lacks besides its score (modality similarities to the user's recent items, popularity, recency,
activity, tag overlap, the candidate's rank). Validation and test are never read to fit it, so the verdict is
measured on every validation user: validation NDCG@20 of the served path before and after reranking. The verdict
decides whether the run applies the ranker (``--rerank auto``, the default) and says so.

With ``train.refit`` the verdict is that of a ranker fitted on the train-only model's candidates (the model
validation is scored with); the ranker the run serves is then refitted, with the same settings and seed, on the
refit model's candidates over a time slice of train + valid, as the towers are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fusionrec.core.engine.ranker_data import (
    ItemSource,
    RankerDataSettings,
    RerankInputs,
    build_from,
    item_tags_from,
)
from fusionrec.core.engine.two_stage import Seen, TwoStage
from fusionrec.core.engine.two_tower import Features
from fusionrec.core.errors import DataError, FusionrecError
from fusionrec.core.ranking import Ranker

VERDICT_METRIC = "ndcg@20"
RERANK_MODES = ("auto", "always", "never")


def item_source(stage: TwoStage, modalities: Features, items: pd.DataFrame, n_users: int) -> ItemSource:
    """The item side of the ranker's features for ``stage``'s model: its item vectors and modality weights, the
    fixed per-modality features, the items' tags, and its user tower."""
    assert stage.scorer is not None, "reranking needs a two-tower model"
    n_items = stage.n_items
    weights = stage.item_weights if stage.item_weights is not None else torch.zeros(n_items, 0)
    return ItemSource(
        item_vectors=stage.scorer.item_vectors,
        item_weights=weights,
        modalities=modalities,
        user_vectors=stage.query_vectors,
        n_users=n_users,
        item_tags=item_tags_from(items),
    )


def with_inputs(stage: TwoStage, source: ItemSource, known: pd.DataFrame, settings: RankerDataSettings) -> TwoStage:
    """``stage`` reranking with the extra features, their statistics from ``known`` (what the model may know)."""
    return replace(stage, inputs=RerankInputs.of(source, known, settings))


def fit_on_slice(
    ranker: Ranker,
    stage: TwoStage,
    train: pd.DataFrame,
    source: ItemSource,
    settings: RankerDataSettings,
    seed: int,
) -> dict[str, Any]:
    """Fit ``ranker`` on ``stage``'s own candidates over a time slice of ``train`` (:func:`ranker_data.build_from`).

    Seeded (torch's generator is set from ``seed`` first), so the same run fits the same ranker.

    Raises:
        FusionrecError: the slice gives nothing to learn from (no positive among the candidates, or only positives).
    """

    def retrieve(
        vectors: torch.Tensor, exclude: Sequence[npt.NDArray[np.int64]], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        found = stage.retrieve(vectors, Seen.of_lists(exclude), n)
        return found.items, found.scores

    try:
        data = build_from(train, source, settings, retrieve)
    except DataError as exc:
        raise FusionrecError(f"the ranker has nothing to learn from: {exc}") from exc
    if int(data.labels.sum()) == len(data.labels):
        raise FusionrecError(
            "the ranker has nothing to learn from: every candidate pair is a positive; raise evaluate.candidates"
        )
    torch.manual_seed(seed)
    ranker.fit(data.features, data.labels)
    return {**data.info, "features": list(data.features.extra_names)}


def verdict(before: float, after: float, users: int) -> dict[str, Any]:
    """Whether reranking helped on the validation users, as data and as one line."""
    helped = after > before
    return {
        "helped": helped,
        "metric": VERDICT_METRIC,
        "before": before,
        "after": after,
        "line": f"reranking {'helped' if helped else 'did not help'}: validation NDCG@20 {before:.4f} → {after:.4f} "
        f"on {users} validation users",
    }


def applies(mode: str, helped: bool | None) -> bool:
    """Whether a run reranks: ``always``, ``never``, or ``auto`` (only when the validation verdict is positive)."""
    if mode not in RERANK_MODES:
        raise FusionrecError(f"--rerank must be one of {', '.join(RERANK_MODES)}, got {mode!r}")
    return mode == "always" or (mode == "auto" and bool(helped))
