"""The torch module behind the built-in ``gated`` fuser."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax
from fusionrec.plugins.fusers.common import present_inputs, zero_absent


class GatedFuser(Fuser):
    """Learned gates: a small network reads every projected modality and decides how much each one counts.

    ``h_m = W_m x_m`` (size ``dim``; zero for an absent modality). The gate network, ``Linear → ReLU → Dropout →
    Linear``, reads the concatenation ``[h_1, …, h_M, presence bits]`` and outputs one logit per modality; the
    weights are their softmax over the present modalities and the fused vector is ``Σ_m a_m h_m``.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int = 128, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__(input_dims)
        self.out_dim = dim
        n = len(self.modalities)
        self.proj = nn.ModuleList([nn.Linear(size, dim) for size in self.input_dims.values()])
        self.gate = nn.Sequential(nn.Linear(n * dim + n, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n))
        self.dropout = nn.Dropout(dropout)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        inputs = present_inputs(self, features, mask)
        h = zero_absent(torch.stack([self.dropout(p(x)) for p, x in zip(self.proj, inputs, strict=True)], 1), mask)
        logits = self.gate(torch.cat([h.flatten(1), mask.to(h.dtype)], dim=1))
        weights = masked_softmax(logits, mask)
        return FusionOutput((weights.unsqueeze(-1) * h).sum(dim=1), weights)
