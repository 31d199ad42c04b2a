"""The torch module behind the built-in ``low_rank`` fuser."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput
from fusionrec.plugins.fusers.common import present_inputs, shares


class LowRankFuser(Fuser):
    """Low-rank multimodal fusion (LMF; Liu et al., ACL 2018): the outer-product tensor fusion, in factored form.

    Each modality's vector gets a constant 1 appended, ``x̂_m = [x_m, 1]``, and has ``rank`` factors
    ``W_m^(r)`` of shape ``(d_m + 1, dim)``. The fused vector is
    ``Σ_r λ_r · Π_m (x̂_m W_m^(r)) + b`` (the product element-wise across modalities). An absent modality reads
    ``x_m = 0``, so it contributes only ``W_m^(r)``'s last row, the factor of the constant input, whatever its
    features hold. Factors start as that row = 1 plus a random projection of ``x_m``, so an absent modality
    starts as the identity of the product.

    Weights: modality m's weight is how far the fused vector moves when m is dropped, ``‖f(x) − f(x without m)‖``,
    normalised to sum to 1 over the present modalities (uniform over them if no present modality moves it).
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int = 128, rank: int = 4) -> None:
        super().__init__(input_dims)
        self.out_dim = dim
        self.rank = rank
        factors = []
        for size in self.input_dims.values():
            factor = torch.empty(rank, size + 1, dim)
            nn.init.normal_(factor[:, :size], std=1.0 / math.sqrt(size))
            nn.init.ones_(factor[:, size])
            factors.append(nn.Parameter(factor))
        self.factors = nn.ParameterList(factors)
        self.rank_weights = nn.Parameter(torch.randn(rank) / math.sqrt(rank))
        self.bias = nn.Parameter(torch.zeros(dim))

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        inputs = present_inputs(self, features, mask)
        # z_m = x̂_m W_m^(r) = x_m W_m^(r)[:-1] + W_m^(r)[-1], shape (B, rank, dim)
        z = [torch.einsum("bi,rid->brd", x, w[:, :-1]) + w[:, -1] for x, w in zip(inputs, self.factors, strict=True)]
        fused = self._combine(z)
        moved = []
        for m, w in enumerate(self.factors):
            without = self._combine([w[:, -1].expand_as(z[m]) if j == m else zj for j, zj in enumerate(z)])
            moved.append((fused - without).norm(dim=1))
        return FusionOutput(fused, shares(torch.stack(moved, dim=1), mask))

    def _combine(self, z: list[torch.Tensor]) -> torch.Tensor:
        product = z[0]
        for zj in z[1:]:
            product = product * zj
        return torch.einsum("r,brd->bd", self.rank_weights, product) + self.bias
