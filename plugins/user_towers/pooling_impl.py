"""The pooling user towers behind ``mean``, ``attention_pool`` and ``id``: order-free summaries of a history."""

from __future__ import annotations

import math

import torch
from torch import nn

from fusionrec.core.fusion import masked_softmax
from fusionrec.plugins.user_towers.common import HistoryTower, newer_counts


class MeanTower(HistoryTower):
    """The mean of the history's item vectors, optionally followed by a linear layer.

    It reads the most recent ``max_history`` items: ``u = W · mean_j h_j + b`` with ``project``, else
    ``u = mean_j h_j``; an empty history gives the zero vector. The projection starts as the identity, so an
    untrained tower is the plain mean.
    """

    def __init__(
        self,
        item_dim: int,
        n_users: int = 0,
        max_history: int = 50,
        user_ids: bool = False,
        project: bool = False,
        basket: bool = False,
    ) -> None:
        super().__init__(item_dim, n_users, max_history, user_ids, basket)
        self.project: nn.Linear | None = None
        if project:
            self.project = nn.Linear(item_dim, item_dim)
            with torch.no_grad():
                self.project.weight.copy_(torch.eye(item_dim))
                self.project.bias.zero_()

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(history.dtype)
        mean = history.sum(dim=1) / count
        return mean if self.project is None else self.project(mean)


class AttentionPoolTower(HistoryTower):
    """Attention pooling over the history with a learned query (and, with user ids, the user's embedding).

    Over the most recent ``max_history`` items: ``e_j = <q, W_k h_j> / sqrt(item_dim) + r_age(j)``,
    ``a = softmax(e)`` over the real items and ``u = Σ_j a_j h_j``. The query ``q`` is a learned vector plus, with
    ``user_ids``, the user's embedding (which is also added to ``u``); ``r`` is an optional learned bias per
    recency (0 for the newest item).
    """

    def __init__(
        self,
        item_dim: int,
        n_users: int = 0,
        max_history: int = 50,
        user_ids: bool = False,
        recency: bool = True,
        dropout: float = 0.0,
        basket: bool = False,
    ) -> None:
        super().__init__(item_dim, n_users, max_history, user_ids, basket)
        self.query = nn.Parameter(torch.randn(item_dim) / math.sqrt(item_dim))
        self.key = nn.Linear(item_dim, item_dim, bias=False)
        self.recency = nn.Parameter(torch.zeros(max(max_history, 1))) if recency else None
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(item_dim)

    def attention(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights ``(batch, length')`` over the window the tower reads (the last ``max_history``
        positions): non-negative, zero on padding, summing to 1 over each row's real items (all zeros when none)."""
        history, mask = self.window(history, mask)
        user = self.user_vectors(users, history.shape[0], history)
        return self._weights(history, mask, user)

    def _weights(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        query = self.query.expand(history.shape[0], -1) if user is None else self.query + user
        keys = self.key(self.dropout(history))
        scores = torch.einsum("bld,bd->bl", keys, query) / self.scale
        if self.recency is not None:
            scores = scores + self.recency[newer_counts(mask).clamp(max=self.recency.shape[0] - 1)]
        return masked_softmax(scores, mask)

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        weights = self._weights(history, mask, user)
        return torch.einsum("bl,bld->bd", weights, history)


class IdTower(HistoryTower):
    """A learned embedding per user id and nothing else: the user side of BPR-MF. Reads no history."""

    def __init__(self, item_dim: int, n_users: int, init_std: float = 0.1) -> None:
        if not isinstance(n_users, int) or n_users <= 0:
            raise ValueError(f"the id tower needs at least one user (n_users > 0), got n_users={n_users!r}")
        super().__init__(item_dim, n_users, max_history=0, user_ids=True)
        assert self.user_embedding is not None
        nn.init.normal_(self.user_embedding.weight, std=init_std)

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        raise AssertionError("unreachable: the id tower reads no history (max_history is 0)")
