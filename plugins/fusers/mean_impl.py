"""The torch module behind the built-in ``mean`` fuser."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput
from fusionrec.plugins.fusers.common import present_inputs


class MeanFuser(Fuser):
    """The mean of the modalities' linear projections over the present modalities, with uniform weights.

    ``fused = (1/|P|) Σ_{m∈P} W_m x_m`` over the present set P, and every present modality weighs ``1/|P|``; an
    item with no modality present gets the zero vector. The simplest learned fuser, and the baseline the others
    should beat.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int = 128) -> None:
        super().__init__(input_dims)
        self.out_dim = dim
        self.proj = nn.ModuleList([nn.Linear(size, dim) for size in self.input_dims.values()])

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        inputs = present_inputs(self, features, mask)
        h = torch.stack([p(x) for p, x in zip(self.proj, inputs, strict=True)], dim=1)
        present = mask.to(h.dtype)
        weights = present / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        return FusionOutput((weights.unsqueeze(-1) * h).sum(dim=1), weights)
