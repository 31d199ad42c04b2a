"""The ranker interface: P = σ(W·F + b) and its kin, scoring retrieved (user, item) candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class RankingFeatures:
    """Features of ``n`` (user, candidate item) pairs.

    The last three attributes are optional (``None`` / empty by default), so a ranker written before they existed
    keeps working: it may ignore them.

    Attributes:
        user: ``(n, user_dim)`` user vectors.
        item: ``(n, item_dim)`` fused item vectors.
        modality_weights: ``(n, n_modalities)`` the fuser's per-modality weights of each item.
        retrieval_score: ``(n,)`` the retriever's similarity.
        extra: ``(n, f)`` further features of each pair that the retriever does not see (popularity, recency,
            per-modality similarity to the user's recent items, …), or ``None``.
        extra_names: the names of the ``f`` columns of ``extra`` (empty when ``extra`` is ``None``); a ranker
            fitted with them checks that it scores the same columns.
        groups: ``(n,)`` integer query ids, one per user list (the pairs of one user's candidate list share
            one), so pairwise and listwise objectives compare candidates within a list; or ``None``.
    """

    user: torch.Tensor
    item: torch.Tensor
    modality_weights: torch.Tensor
    retrieval_score: torch.Tensor
    extra: torch.Tensor | None = None
    extra_names: tuple[str, ...] = ()
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.retrieval_score.shape[0])

    def select(self, rows: torch.Tensor | slice) -> RankingFeatures:
        """The pairs at ``rows`` (a slice, an index tensor or a boolean mask), every part sliced alike."""
        return RankingFeatures(
            user=self.user[rows],
            item=self.item[rows],
            modality_weights=self.modality_weights[rows],
            retrieval_score=self.retrieval_score[rows],
            extra=None if self.extra is None else self.extra[rows],
            extra_names=self.extra_names,
            groups=None if self.groups is None else self.groups[rows],
        )


class Ranker(ABC):
    """Reranks retrieval candidates with a classifier of P(relevant | user, item)."""

    @abstractmethod
    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        """Train on labelled pairs (``labels``: ``(n,)`` floats in {0, 1}).

        ``features.groups``, when given, says which pairs belong to the same user's candidate list; rankers with a
        pairwise or listwise objective compare positives and negatives within a group.
        """

    @abstractmethod
    def score(self, features: RankingFeatures) -> torch.Tensor:
        """``(n,)`` probabilities (or any scores where higher means more relevant)."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted ranker into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Ranker:
        """Read a ranker written by :meth:`save`."""
