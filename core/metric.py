"""The metric interface: quality of top-K lists, per user or over the whole set of users."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Metric(ABC):
    """A top-K ranking metric.

    Pipelines name metrics as ``name@K`` (``recall@20``); factories are called as ``factory(k=K, **params)``.

    Most metrics are *per-user* (:attr:`per_user` true): :meth:`compute` gives one value per user from the hit
    matrix, and the evaluation engine reports the mean over users (with a bootstrap interval). A *corpus* metric
    (:attr:`per_user` false, e.g. item coverage) is one number over every user's top-K list: it implements
    :meth:`corpus` instead, and :meth:`compute` is never called; subclass :class:`CorpusMetric` for one.

    Attributes:
        k: the cut-off.
        per_user: true when the metric is a mean of per-user values (:meth:`compute`), false when it is one value
            over all users' lists (:meth:`corpus`).
    """

    k: int
    per_user: bool = True

    @abstractmethod
    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        """Per-user values.

        Args:
            hits: ``(users, K')`` bool, ``K' >= k``: whether the item at each rank is relevant. Only the first
                ``k`` columns count.
            n_relevant: ``(users,)`` number of relevant items of each user.

        Returns:
            ``(users,)`` float tensor.
        """

    def corpus(self, top_items: torch.Tensor, n_candidates: int) -> float:
        """One value over every evaluated user's list (corpus metrics only).

        Args:
            top_items: ``(users, K')`` int64 item ids, best first, ``K' >= k``; ``-1`` pads lists shorter than
                ``K'``. Only the first ``k`` columns count.
            n_candidates: how many items could be recommended (the catalogue, or the protocol's candidates).

        Returns:
            The metric's value.
        """
        raise NotImplementedError(f"{type(self).__name__} is a per-user metric: use compute()")


class CorpusMetric(Metric):
    """Base class of a corpus metric: implements :meth:`corpus`; :meth:`compute` is not available."""

    per_user = False

    def compute(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is a corpus metric: use corpus()")

    @abstractmethod
    def corpus(self, top_items: torch.Tensor, n_candidates: int) -> float:
        """See :meth:`Metric.corpus`."""
