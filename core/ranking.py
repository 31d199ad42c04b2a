"""The ranker interface: P = σ(W·F + b) and its kin, scoring retrieved (user, item) candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class RankingFeatures:
    """Features of ``n`` (user, candidate item) pairs.

    Attributes:
        user: ``(n, user_dim)`` user vectors.
        item: ``(n, item_dim)`` fused item vectors.
        modality_weights: ``(n, n_modalities)`` the fuser's per-modality weights of each item.
        retrieval_score: ``(n,)`` the retriever's similarity.
    """

    user: torch.Tensor
    item: torch.Tensor
    modality_weights: torch.Tensor
    retrieval_score: torch.Tensor

    def __len__(self) -> int:
        return int(self.retrieval_score.shape[0])


class Ranker(ABC):
    """Reranks retrieval candidates with a classifier of P(relevant | user, item)."""

    @abstractmethod
    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        """Train on labelled pairs (``labels``: ``(n,)`` floats in {0, 1})."""

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
