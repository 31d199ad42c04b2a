"""The ``transformer`` user tower: SASRec-style causal self-attention over the history (Kang & McAuley, 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

from fusionrec.plugins.user_towers.common import HistoryTower, newer_counts


class CausalBlock(nn.Module):
    """One pre-LayerNorm transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``.

    Written out rather than ``nn.TransformerEncoderLayer``, whose inference fast path treats masked positions
    differently from training and needs at least one visible key per row.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` ``(batch, length, dim)``; ``allowed`` ``(batch, length, length)`` bool, query × key."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm_attention(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (batch, heads, length, length)
        scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        context = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        x = x + self.dropout(self.out(context))
        out: torch.Tensor = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return out


class TransformerTower(HistoryTower):
    """SASRec: causal self-attention over the history; the user vector is the output at the newest position.

    It reads the most recent ``max_history`` items. Input ``x_j = h_j + p_age(j)``, with learned positional
    embeddings indexed by recency (0 for the newest item), so left padding never shifts them; then ``layers``
    pre-LayerNorm blocks in which position ``t`` attends to the real items at positions ``<= t``, and a final
    LayerNorm. :meth:`encode_sequence` returns every position, for training on the next item at all positions at
    once.
    """

    sequential = True

    def __init__(
        self,
        item_dim: int,
        n_users: int = 0,
        max_history: int = 50,
        user_ids: bool = False,
        layers: int = 2,
        heads: int = 2,
        ffn_factor: int = 4,
        dropout: float = 0.1,
        basket: bool = False,
    ) -> None:
        super().__init__(item_dim, n_users, max_history, user_ids, basket)
        if max_history < 1:
            raise ValueError(f"max_history must be at least 1 for the transformer tower, got {max_history}")
        if item_dim % heads:
            raise ValueError(
                f"item_dim ({item_dim}) must be divisible by heads ({heads}): each head reads item_dim / heads "
                f"dimensions. Choose heads among the divisors of {item_dim}."
            )
        self.position = nn.Embedding(max_history, item_dim)
        nn.init.normal_(self.position.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [CausalBlock(item_dim, heads, ffn_factor * item_dim, dropout) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(item_dim)

    def _states(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The final-LayerNorm output at every position, ``(batch, length, item_dim)``."""
        length = history.shape[1]
        ages = newer_counts(mask).clamp(max=self.max_history - 1)
        x = self.dropout(history + self.position(ages))
        index = torch.arange(length, device=history.device)
        causal = index.unsqueeze(1) >= index.unsqueeze(0)  # query t sees keys s <= t
        # real keys only; every position also sees itself, so no row of scores is all -inf (padding queries
        # then attend to themselves alone, and nothing real attends to them)
        allowed = (causal & mask.unsqueeze(1)) | torch.eye(length, dtype=torch.bool, device=history.device)
        for block in self.blocks:
            x = block(x, allowed)
        out: torch.Tensor = self.norm(x)
        return out

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        states = self._states(history, mask)
        positions = torch.arange(history.shape[1], device=history.device)
        last = torch.where(mask, positions, 0).max(dim=1).values  # the most recent real item (the last, left-padded)
        return states[torch.arange(history.shape[0], device=history.device), last]

    def encode_sequence(
        self, history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The user vector after each prefix: ``(batch, length, item_dim)``; position ``t`` sees items ``<= t``.

        Padding positions are zeros. ``length`` may not exceed ``max_history`` (the positional embeddings stop
        there).
        """
        if history.dim() == 3 and history.shape[1] > self.max_history:
            raise ValueError(
                f"encode_sequence reads at most max_history={self.max_history} positions, got {history.shape[1]}"
            )
        history, mask = self.window(history, mask)
        user = self.user_vectors(users, history.shape[0], history)
        if history.shape[1] == 0:
            return history.new_zeros(history.shape[0], 0, self.out_dim)
        states = self._states(history, mask)
        if user is not None:
            states = states + user.unsqueeze(1)
        return torch.where(mask.unsqueeze(-1), states, torch.zeros((), dtype=states.dtype, device=states.device))
