"""What the built-in user towers share: the history window, the optional user-id embedding, empty histories."""

from __future__ import annotations

import torch
from torch import nn

from fusionrec.core.user_tower import UserTower


def newer_counts(mask: torch.Tensor) -> torch.Tensor:
    """``(batch, length)`` int64: for each position, how many real items come after it (0 for the most recent)."""
    real = mask.to(torch.long)
    return real.flip(1).cumsum(1).flip(1) - real


class HistoryTower(UserTower):
    """Base class of the built-in towers: checks the arguments, keeps the most recent ``max_history`` items, adds
    the optional user-id embedding and makes an empty history the zero vector (plus that embedding).

    Subclasses implement :meth:`encode_items`, which sees a window whose padding positions hold zeros.
    """

    def __init__(
        self, item_dim: int, n_users: int = 0, max_history: int = 50, user_ids: bool = False, basket: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(item_dim, int) or item_dim <= 0:
            raise ValueError(f"item_dim must be a positive integer, got {item_dim!r}")
        if not isinstance(max_history, int) or max_history < 0:
            raise ValueError(f"max_history must be a non-negative integer, got {max_history!r}")
        self.item_dim = item_dim
        self.out_dim = item_dim
        self.max_history = max_history
        self.basket = bool(basket)
        self.n_users = n_users
        self.user_embedding: nn.Embedding | None = None
        if user_ids:
            if not isinstance(n_users, int) or n_users <= 0:
                raise ValueError(
                    f"user_ids: true needs the number of users (n_users > 0) to size the user-id embedding, "
                    f"got n_users={n_users!r}"
                )
            # zero at the start, drawing no random numbers: the untrained tower is the history-only tower with the
            # same seed, and the embedding learns a per-user correction (d(output)/d(embedding) is the identity)
            self.user_embedding = nn.Embedding(n_users, item_dim, _weight=torch.zeros(n_users, item_dim))

    def window(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the shapes; return the last ``max_history`` positions with padding zeroed (it may hold anything)."""
        if history.dim() != 3 or history.shape[-1] != self.item_dim:
            raise ValueError(f"history must have shape (batch, length, {self.item_dim}), got {tuple(history.shape)}")
        if tuple(mask.shape) != tuple(history.shape[:2]):
            raise ValueError(f"mask must have shape {tuple(history.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.to(torch.bool)
        if history.shape[1] > self.max_history:
            history, mask = (
                history[:, history.shape[1] - self.max_history :],
                mask[:, mask.shape[1] - self.max_history :],
            )
        history = torch.where(mask.unsqueeze(-1), history, torch.zeros((), dtype=history.dtype, device=history.device))
        return history, mask

    def user_vectors(self, users: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        """The user-id embedding of each row, or ``None`` when the tower has none."""
        if self.user_embedding is None:
            return None
        if users is None:
            raise ValueError(f"{type(self).__name__} has a user-id embedding (user_ids: true) and needs the user ids")
        users = users.to(device=like.device, dtype=torch.long)
        if tuple(users.shape) != (batch,):
            raise ValueError(f"users must have shape ({batch},), got {tuple(users.shape)}")
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.user_embedding.num_embeddings):
            raise ValueError(
                f"user ids must lie in 0..{self.user_embedding.num_embeddings - 1} (n_users="
                f"{self.user_embedding.num_embeddings}), got ids from {int(users.min())} to {int(users.max())}"
            )
        embedded: torch.Tensor = self.user_embedding(users).to(like.dtype)
        return embedded

    def encode_history(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None
    ) -> torch.Tensor:
        history, mask = self.window(history, mask)
        user = self.user_vectors(users, history.shape[0], history)
        if history.shape[1] == 0:
            out = history.new_zeros(history.shape[0], self.out_dim)
        else:
            out = self.encode_items(history, mask, user)
            out = torch.where(mask.any(dim=1, keepdim=True), out, torch.zeros((), dtype=out.dtype, device=out.device))
        return out if user is None else out + user

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        """The history part of the user vectors.

        Args:
            history: ``(batch, length, item_dim)``, ``0 < length <= max_history``, padding positions zeroed.
            mask: ``(batch, length)`` bool.
            user: the rows' user-id embeddings (``None`` without ``user_ids``); added to the result by the caller,
                passed for towers that also use it inside (as an attention query).

        Returns:
            ``(batch, out_dim)``; rows without any real item are replaced by zeros afterwards.
        """
        raise NotImplementedError
