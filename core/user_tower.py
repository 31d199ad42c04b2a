"""The user-tower interface: a user vector from the vectors of the items in the user's history."""

from __future__ import annotations

import torch
from torch import nn


class UserTower(nn.Module):
    """Maps a user's interaction history to a vector in the item space.

    Factories are called as ``factory(item_dim=..., n_users=..., **params)``. The history is whatever is known at
    prediction time, so a user's newest interactions count without retraining.

    Attributes:
        item_dim: size of the item vectors the tower reads.
        out_dim: size of the user vectors (equal to ``item_dim`` for dot-product retrieval).
        max_history: how many of the most recent history items the engine feeds the tower; 0 for a tower that
            reads no history (a user-id embedding).
        sequential: true for towers that implement :meth:`encode_sequence` (SASRec-style towers, trained on the
            next item at every position at once).
        basket: true for towers that read one step per basket (a user's interactions with one timestamp): the
            engine feeds them the mean of each basket's item vectors as one position, counts ``max_history`` in
            baskets, and trains every item on the baskets before its own.
    """

    item_dim: int
    out_dim: int
    max_history: int
    sequential: bool = False
    basket: bool = False

    def forward(self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode_history(history, mask, users)

    def encode_history(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode a batch of histories.

        Args:
            history: ``(batch, length, item_dim)`` item vectors, oldest first, left-padded.
            mask: ``(batch, length)`` bool, true for real (not padding) positions.
            users: ``(batch,)`` internal user ids, for towers with a user-id embedding; may be ``None``.

        Returns:
            ``(batch, out_dim)`` user vectors.
        """
        raise NotImplementedError

    def encode_sequence(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Optional (towers with ``sequential = True``): the user vector after every prefix of the history at once.

        Position ``t`` of the result depends only on the items at positions ``<= t`` (causal), and the last
        position equals :meth:`encode_history`, so the engine can train next-item prediction at every position in
        one pass. Padding positions hold finite values that mean nothing.

        Args:
            history: ``(batch, length, item_dim)`` item vectors, oldest first, left-padded.
            mask: ``(batch, length)`` bool, true for real (not padding) positions.
            users: ``(batch,)`` internal user ids, for towers with a user-id embedding; may be ``None``.

        Returns:
            ``(batch, length, out_dim)`` user vectors.
        """
        raise NotImplementedError(f"{type(self).__name__} is not a sequential user tower")
