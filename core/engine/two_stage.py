"""The rerank stage: the seed's classifier P = σ(W·F + b) reranking the two-tower's candidates, measured honestly.

The ranker learns from held-out positives against hard negatives: for a validation user, the candidates are the
top-N items the towers retrieve from the training history (training items excluded); those in the user's
validation part are positives, the rest negatives. Validation users are split in two halves (seeded): the ranker
is fitted on one and validation NDCG@20 is compared before and after reranking on the other, so the "after"
number is not measured on the ranker's own training pairs. The report says whether reranking helped; the pipeline
keeps the ranker either way (a user asked for it) and prints the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fusionrec.core.data import SplitData
from fusionrec.core.engine.two_tower import Histories, TwoTowerScorer
from fusionrec.core.ranking import Ranker, RankingFeatures

ScoreFn = Callable[[npt.NDArray[np.int64]], torch.Tensor]


@dataclass
class TwoStage:
    """Tower scores, then the ranker's reorder of each user's top-N unseen candidates."""

    scorer: TwoTowerScorer
    item_weights: torch.Tensor
    ranker: Ranker | None
    candidates: int

    def candidate_features(
        self, users: npt.NDArray[np.int64], histories: Histories, known: pd.DataFrame
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RankingFeatures]:
        """Top-N unseen candidates ``(B, N)``, their tower scores ``(B, N)``, which of them are real ``(B, N)``
        (a user with fewer than N unseen items has padding), and the ranking features of the real ones."""
        user_vectors = self.scorer.user_vectors(users, histories)
        scores = user_vectors @ self.scorer.item_vectors.T
        mask_known(scores, users, known)
        n = min(self.candidates, scores.shape[1])
        top_scores, top_items = scores.topk(n, dim=1)
        valid = torch.isfinite(top_scores)
        rows = torch.arange(len(users)).unsqueeze(1).expand(-1, n)[valid]
        items = top_items[valid]
        features = RankingFeatures(
            user=user_vectors[rows],
            item=self.scorer.item_vectors[items],
            modality_weights=self.item_weights[items],
            retrieval_score=top_scores[valid],
        )
        return top_items, top_scores, valid, features

    def score_fn(self, histories: Histories, known: pd.DataFrame) -> ScoreFn:
        """Scores for evaluation: reranked candidates first (in the ranker's order), then the rest by tower score."""

        def score(users: npt.NDArray[np.int64]) -> torch.Tensor:
            base = self.scorer.user_vectors(users, histories) @ self.scorer.item_vectors.T
            if self.ranker is None:
                return base
            items, tower_scores, valid, features = self.candidate_features(users, histories, known)
            reranked = tower_scores.clone()
            reranked[valid] = torch.as_tensor(self.ranker.score(features), dtype=torch.float32) + 1.0e6
            out = base.clone()
            out.scatter_(1, items, reranked)
            return out

        return score


def mask_known(scores: torch.Tensor, users: npt.NDArray[np.int64], known: pd.DataFrame) -> None:
    """Set the scores of each user's known items to -inf, in place."""
    rows = known[known["user"].isin(users)]
    position = {int(u): i for i, u in enumerate(users)}
    r = torch.from_numpy(rows["user"].map(position).to_numpy(np.int64, copy=True))
    c = torch.from_numpy(rows["item"].to_numpy(np.int64, copy=True))
    scores[r, c] = float("-inf")


def halves(users: npt.NDArray[np.int64], seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A seeded split of ``users`` into a fitting half and a reporting half."""
    order = np.random.default_rng(seed).permutation(np.sort(users))
    middle = len(order) // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def fit_ranker(
    ranker: Ranker, stage: TwoStage, split: SplitData, n_users: int, users: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """Fit ``ranker`` on ``users``' validation positives among their retrieved candidates."""
    histories = Histories.from_frame(split.train, n_users)
    items, _, valid, features = stage.candidate_features(users, histories, split.train)
    relevant = split.valid[split.valid["user"].isin(users)]
    position = {int(u): i for i, u in enumerate(users)}
    truth = torch.zeros(len(users), stage.scorer.item_vectors.shape[0], dtype=torch.bool)
    truth[
        torch.from_numpy(relevant["user"].map(position).to_numpy(np.int64, copy=True)),
        torch.from_numpy(relevant["item"].to_numpy(np.int64, copy=True)),
    ] = True
    labels = truth.gather(1, items)[valid].float()
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ValueError(
            f"the ranker has nothing to learn from: {positives} of {len(labels)} candidate pairs are positives; "
            "raise evaluate.candidates or use more validation data"
        )
    ranker.fit(features, labels)
    return {"users": len(users), "pairs": len(labels), "positives": positives, "candidates": stage.candidates}
