"""The ``gru`` user tower: a GRU over the chronological history (GRU4Rec-style), projected to the item space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from fusionrec.plugins.user_towers.common import HistoryTower


class GruTower(HistoryTower):
    """A GRU over the history, oldest first; the user vector is its last hidden state, projected to the item size.

    It reads the most recent ``max_history`` items. The real items of each row are moved to the front and packed
    (``pack_padded_sequence``), so the GRU never steps over padding: the result does not depend on how much left
    padding a history has.
    """

    def __init__(
        self,
        item_dim: int,
        n_users: int = 0,
        max_history: int = 50,
        user_ids: bool = False,
        hidden: int | None = None,
        layers: int = 1,
        dropout: float = 0.0,
        basket: bool = False,
    ) -> None:
        super().__init__(item_dim, n_users, max_history, user_ids, basket)
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        hidden = hidden if hidden is not None else item_dim
        self.dropout = nn.Dropout(dropout)
        # nn.GRU's own dropout acts between layers only (and warns when there is one layer)
        self.gru = nn.GRU(item_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.project = nn.Linear(hidden, item_dim)

    def encode_items(self, history: torch.Tensor, mask: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        # a stable sort on "is padding" moves each row's real items to the front, in their order
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        packed_rows = history.gather(1, order.unsqueeze(-1).expand(-1, -1, history.shape[-1]))
        lengths = mask.sum(dim=1).clamp(min=1).cpu()  # empty rows run one zero step; the caller zeroes them
        packed = pack_padded_sequence(self.dropout(packed_rows), lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # (layers, batch, hidden), already in the input's row order
        out: torch.Tensor = self.project(last[-1])
        return out
