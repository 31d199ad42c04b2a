"""The built-in ranking metrics, vectorised over users with torch.

Every per-user metric reads the first ``k`` columns of the hit matrix (``hits[u, i]``: the item user ``u`` got at
rank ``i + 1`` is relevant) and the number of relevant items ``n_relevant[u]``; it returns one float32 value per
user, on the device of ``hits``. A user with no relevant item scores 0 on every metric (the evaluation engine never
evaluates such a user). Ranks are 1-based in the formulas below; ``rel_i`` is 1 when the item at rank ``i`` is
relevant, else 0.
"""

from __future__ import annotations

import torch

from fusionrec.core.metric import CorpusMetric, Metric


class _CutOff:
    """The shared ``k`` handling: checked at construction, and every input checked against it."""

    k: int

    def __init__(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"

    def _top(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``hits[:, :k]`` as float32 and ``n_relevant`` as float32, after checking their shapes."""
        if hits.ndim != 2 or hits.shape[1] < self.k:
            raise ValueError(f"hits must be (users, K') with K' >= {self.k}, got shape {tuple(hits.shape)}")
        if n_relevant.shape != (hits.shape[0],):
            raise ValueError(f"n_relevant must be (users,) = ({hits.shape[0]},), got shape {tuple(n_relevant.shape)}")
        top = hits[:, : self.k].to(torch.bool).to(torch.float32)
        return top, n_relevant.to(device=hits.device, dtype=torch.float32)

    def _ranks(self, device: torch.device) -> torch.Tensor:
        """``1, 2, …, k`` as float32."""
        return torch.arange(1, self.k + 1, dtype=torch.float32, device=device)


class Recall(_CutOff, Metric):
    """Recall@K: hits in the top K divided by the number of relevant items (RecBole convention).

    ``recall = Σ_{i≤K} rel_i / n_relevant``. The denominator is not capped at K: a user with more relevant items
    than K cannot reach 1.
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        return torch.where(n_rel > 0, top.sum(dim=1) / n_rel.clamp(min=1), torch.zeros_like(n_rel))


class NDCG(_CutOff, Metric):
    """NDCG@K, binary relevance: DCG over the ideal DCG of min(n_relevant, K) hits.

    ``DCG = Σ_{i≤K} rel_i / log2(i + 1)``, ``IDCG = Σ_{i≤min(n_relevant, K)} 1 / log2(i + 1)``,
    ``NDCG = DCG / IDCG`` (0 when n_relevant is 0).
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        discounts = 1.0 / torch.log2(self._ranks(top.device) + 1.0)
        dcg = (top * discounts).sum(dim=1)
        ideal_hits = n_rel.clamp(max=self.k).to(torch.long)
        ideal = torch.cat([torch.zeros(1, device=top.device), discounts.cumsum(dim=0)])[ideal_hits]
        return torch.where(ideal_hits > 0, dcg / ideal.clamp(min=1e-12), torch.zeros_like(dcg))


class HitRate(_CutOff, Metric):
    """HitRate@K: 1 when at least one of the top K items is relevant, else 0.

    ``hit_rate = 1[Σ_{i≤K} rel_i > 0]``.
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        return ((top.sum(dim=1) > 0) & (n_rel > 0)).to(torch.float32)


class MRR(_CutOff, Metric):
    """MRR@K: the reciprocal rank of the first relevant item in the top K, 0 when there is none.

    ``rr = max_{i≤K} rel_i / i``; the reported MRR is its mean over users.
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        reciprocal = (top / self._ranks(top.device)).amax(dim=1)
        return torch.where(n_rel > 0, reciprocal, torch.zeros_like(reciprocal))


class Precision(_CutOff, Metric):
    """Precision@K: hits in the top K divided by K.

    ``precision = Σ_{i≤K} rel_i / K`` (K, not the list's length: a list padded because too few items could be
    ranked still divides by K).
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        return torch.where(n_rel > 0, top.sum(dim=1) / self.k, torch.zeros_like(n_rel))


class MAP(_CutOff, Metric):
    """MAP@K: average precision over the top K, normalised by min(n_relevant, K).

    ``AP = (1 / min(n_relevant, K)) Σ_{i≤K} precision@i · rel_i`` with ``precision@i = Σ_{j≤i} rel_j / i``;
    the reported MAP is the mean of AP over users.
    """

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        top, n_rel = self._top(hits, n_relevant)
        precision_at = top.cumsum(dim=1) / self._ranks(top.device)
        denominator = n_rel.clamp(max=self.k)
        summed = (precision_at * top).sum(dim=1)
        return torch.where(denominator > 0, summed / denominator.clamp(min=1), torch.zeros_like(summed))


class ItemCoverage(_CutOff, CorpusMetric):
    """Item coverage@K: the share of the rankable items that appear in at least one evaluated user's top K.

    ``coverage = |∪_u top_K(u)| / n_candidates``, where ``n_candidates`` is the number of items that could be
    ranked (the catalogue, or the protocol's candidate items). One value for the whole evaluation, not a mean of
    per-user values, so it has no bootstrap interval.
    """

    def corpus(self, top_items: torch.Tensor, n_candidates: int) -> float:
        if top_items.ndim != 2 or top_items.shape[1] < self.k:
            raise ValueError(f"top_items must be (users, K') with K' >= {self.k}, got shape {tuple(top_items.shape)}")
        if n_candidates <= 0:
            return 0.0
        items = top_items[:, : self.k].reshape(-1).to(torch.long)
        items = items[items >= 0]
        if items.numel() == 0:
            return 0.0
        seen = torch.zeros(int(items.max()) + 1, dtype=torch.bool, device=items.device)
        seen[items] = True  # a scatter, not a sort: linear in the number of list entries
        return float(int(seen.sum())) / float(n_candidates)
