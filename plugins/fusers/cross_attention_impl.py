"""The torch module behind the built-in ``cross_attention`` fuser."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput
from fusionrec.plugins.fusers.common import present_inputs, zero_absent


class CrossAttentionFuser(Fuser):
    """Multi-head attention among the modalities, pooled with the attention each modality receives.

    Each modality is one token, ``h_m = W_m x_m`` (size ``dim``). The tokens attend to one another with
    ``nn.MultiheadAttention`` (``heads`` heads, absent modalities masked out as keys), giving contextualised tokens
    ``z_m = h_m + MHA(h)_m``. The weight of modality m is the attention it receives, averaged over the heads and
    over the present modalities' queries, ``a_m = mean_{q present} A[q, m]``; the fused vector is ``Σ_m a_m z_m``.
    ``dropout`` applies to the tokens and to the attention output, never to the weights, so they always sum to 1.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int = 128, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__(input_dims)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads}): each head gets dim / heads values")
        self.out_dim = dim
        self.heads = heads
        self.proj = nn.ModuleList([nn.Linear(size, dim) for size in self.input_dims.values()])
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        inputs = present_inputs(self, features, mask)
        h = zero_absent(torch.stack([self.dropout(p(x)) for p, x in zip(self.proj, inputs, strict=True)], 1), mask)
        # a row with nothing present would mask every key (NaN); it attends over its zero tokens and weighs 0 below
        padding = ~mask & mask.any(dim=1, keepdim=True)
        context, attention = self.attention(h, h, h, key_padding_mask=padding, need_weights=True)  # (B,M,d), (B,M,M)
        present = mask.to(h.dtype)
        queries = present / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        weights = (queries.unsqueeze(-1) * attention).sum(dim=1) * present  # attention received, (B, M)
        tokens = h + self.dropout(context)
        fused = (weights.unsqueeze(-1) * tokens).sum(dim=1)
        return FusionOutput(fused, weights)
