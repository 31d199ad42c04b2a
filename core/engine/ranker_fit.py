"""Fitting the reranker and judging it honestly: the seed's classifier P = σ(W·F + b) over the retriever's candidates.

The ranker learns from held-out positives against hard negatives: for a validation user, the candidates are the
top-N items the run's own retrieval returns from the training history (training items excluded); those in the
user's validation part are positives, the rest negatives. Validation users are split in two halves (seeded): the
ranker is fitted on one and validation NDCG@20 is compared before and after reranking on the other, so the
"after" number is not measured on the ranker's own training pairs. The verdict decides whether the run applies the
ranker (``--rerank auto``, the default) and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.core.data import SplitData
from fusionrec.core.engine.two_stage import Seen, TwoStage
from fusionrec.core.engine.two_tower import Histories
from fusionrec.core.errors import FusionrecError
from fusionrec.core.ranking import Ranker

VERDICT_METRIC = "ndcg@20"
RERANK_MODES = ("auto", "always", "never")


def halves(users: npt.NDArray[np.int64], seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A seeded split of ``users`` into a fitting half and a reporting half."""
    order = np.random.default_rng(seed).permutation(np.sort(users))
    middle = len(order) // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def fit_ranker(
    ranker: Ranker, stage: TwoStage, split: SplitData, n_users: int, users: npt.NDArray[np.int64], seed: int
) -> dict[str, Any]:
    """Fit ``ranker`` on ``users``' validation positives among the candidates ``stage`` retrieves for them.

    Seeded (torch's generator is set from ``seed`` first), so the same run fits the same ranker.
    """
    histories = Histories.from_frame(split.train, n_users)
    queries = stage.query_vectors(users, histories)
    found = stage.retrieve(queries, Seen.of_frame(split.train, users), stage.candidates)
    features = stage.features(queries, found)
    relevant = split.valid[split.valid["user"].isin(users)]
    position = {int(u): i for i, u in enumerate(users)}
    truth = torch.zeros(len(users), stage.n_items + 1, dtype=torch.bool)  # the last column: padding (-1)
    truth[
        torch.from_numpy(relevant["user"].map(position).to_numpy(np.int64, copy=True)),
        torch.from_numpy(relevant["item"].to_numpy(np.int64, copy=True)),
    ] = True
    valid = found.items >= 0
    labels = truth.gather(1, torch.where(valid, found.items, stage.n_items))[valid].float()
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise FusionrecError(
            f"the ranker has nothing to learn from: {positives} of {len(labels)} candidate pairs are positives; "
            "raise evaluate.candidates or use more validation data"
        )
    torch.manual_seed(seed)
    ranker.fit(features, labels)
    return {"users": len(users), "pairs": len(labels), "positives": positives, "candidates": stage.candidates}


def verdict(before: float, after: float, users: int) -> dict[str, Any]:
    """Whether reranking helped on the held-out validation users, as data and as one line."""
    helped = after > before
    return {
        "helped": helped,
        "metric": VERDICT_METRIC,
        "before": before,
        "after": after,
        "line": f"reranking {'helped' if helped else 'did not help'}: validation NDCG@20 {before:.4f} → {after:.4f} "
        f"on {users} held-out validation users",
    }


def applies(mode: str, helped: bool | None) -> bool:
    """Whether a run reranks: ``always``, ``never``, or ``auto`` (only when the validation verdict is positive)."""
    if mode not in RERANK_MODES:
        raise FusionrecError(f"--rerank must be one of {', '.join(RERANK_MODES)}, got {mode!r}")
    return mode == "always" or (mode == "auto" and bool(helped))
