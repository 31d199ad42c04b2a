"""The metric interface: per-user quality of a top-K list."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Metric(ABC):
    """A top-K ranking metric, computed per user from the hit matrix.

    Pipelines name metrics as ``name@K`` (``recall@20``); factories are called as ``factory(k=K, **params)``.

    Attributes:
        k: the cut-off.
    """

    k: int

    @abstractmethod
    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        """Per-user values.

        Args:
            hits: ``(users, K')`` bool, ``K' >= k``: whether the item at each rank is relevant.
            n_relevant: ``(users,)`` number of relevant items of each user.

        Returns:
            ``(users,)`` float tensor.
        """
