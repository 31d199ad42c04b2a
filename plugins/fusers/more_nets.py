"""The torch modules behind the built-in ``cross_attention``, ``gated``, ``low_rank`` and ``mean`` fusers.

All four read absent modalities as zero vectors (:func:`present_inputs`, which also clears NaN or infinite values
in absent rows), so nothing an absent row holds can reach the output, the weights or the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax
from fusionrec.plugins.fusers.nets import shares


def present_inputs(fuser: Fuser, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Each modality's input in :attr:`Fuser.modalities` order, with the rows where it is absent set to zero."""
    return [
        torch.where(mask[:, i : i + 1], features[m], torch.zeros((), dtype=features[m].dtype))
        for i, m in enumerate(fuser.modalities)
    ]


def _zero_absent(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, M, d)`` tokens with those of absent modalities set to zero."""
    return torch.where(mask.unsqueeze(-1), tokens, torch.zeros((), dtype=tokens.dtype))


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
        h = _zero_absent(torch.stack([self.dropout(p(x)) for p, x in zip(self.proj, inputs, strict=True)], 1), mask)
        # a row with nothing present would mask every key (NaN); it attends over its zero tokens and weighs 0 below
        padding = ~mask & mask.any(dim=1, keepdim=True)
        context, attention = self.attention(h, h, h, key_padding_mask=padding, need_weights=True)  # (B,M,d), (B,M,M)
        present = mask.to(h.dtype)
        queries = present / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        weights = (queries.unsqueeze(-1) * attention).sum(dim=1) * present  # attention received, (B, M)
        tokens = h + self.dropout(context)
        fused = (weights.unsqueeze(-1) * tokens).sum(dim=1)
        return FusionOutput(fused, weights)


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
        h = _zero_absent(torch.stack([self.dropout(p(x)) for p, x in zip(self.proj, inputs, strict=True)], 1), mask)
        logits = self.gate(torch.cat([h.flatten(1), mask.to(h.dtype)], dim=1))
        weights = masked_softmax(logits, mask)
        return FusionOutput((weights.unsqueeze(-1) * h).sum(dim=1), weights)


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
