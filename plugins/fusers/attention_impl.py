"""The torch module behind the built-in ``attention`` fuser."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax


class AttentionFuser(Fuser):
    """Inner-product attention over modalities (the seed paper's g_attention, generalised to any modality set).

    Each present modality m is projected into a shared space, ``h_m = W_m x_m``. Its score is the inner product
    of its query with the mean key of the *other* present modalities, ``e_m = <Q h_m, mean_{j≠m} K h_j> / τ``;
    with image and text that is the inner product of projected image and text features. The weights are
    ``a = softmax(e)`` over the present modalities and the fused vector is ``Σ_m a_m h_m``.

    With the seed's formula alone (the defaults) the weights are free to saturate: with two modalities
    ``e_image − e_text = h_imageᵀ (QᵀK − KᵀQ) h_text / τ`` grows with the projected norms and with Q and K, and
    nothing holds it back, so training drives every item to one modality. Two options counter that:

    - ``normalize``: a LayerNorm (no learned scale) on each ``h_m`` before it is scored and fused, so no modality
      wins by the size of its projection, and the fused vector mixes vectors of equal size;
    - ``modality_dropout``: while training, each present modality of an item is dropped with this probability
      (at least one is kept), so the towers must work from every modality alone and cannot ignore one.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int = 128,
        dropout: float = 0.0,
        temperature: float | None = None,
        normalize: bool = False,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims)
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.out_dim = dim
        # a list in modality order, not a ModuleDict: modality names like 'type' or 'keys' clash with its attributes
        self.proj = nn.ModuleList([nn.Linear(size, dim) for size in self.input_dims.values()])
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.temperature = temperature if temperature is not None else math.sqrt(dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False) if normalize else None
        self.modality_dropout = float(modality_dropout)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        mask = self.drop_modalities(mask)
        projected = [proj(features[m]) for proj, m in zip(self.proj, self.modalities, strict=True)]
        if self.norm is not None:
            projected = [self.norm(h) for h in projected]
        h = torch.stack([self.dropout(h) for h in projected], dim=1)  # (B, M, d)
        present = mask.to(h.dtype)
        h = h * present.unsqueeze(-1)
        keys = self.key(h) * present.unsqueeze(-1)
        others = (present.sum(dim=1, keepdim=True) - present).clamp(min=1.0)  # (B, M)
        mean_other_key = (keys.sum(dim=1, keepdim=True) - keys) / others.unsqueeze(-1)
        scores = (self.query(h) * mean_other_key).sum(dim=-1) / self.temperature  # (B, M)
        weights = masked_softmax(scores, mask)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)
        return FusionOutput(fused, weights)

    def drop_modalities(self, mask: torch.Tensor) -> torch.Tensor:
        """While training with ``modality_dropout``, ``mask`` with each present modality dropped with that
        probability, except that an item keeps its modalities when all of them would be dropped."""
        if not self.training or self.modality_dropout == 0.0:
            return mask
        kept = mask & (torch.rand(mask.shape, device=mask.device) >= self.modality_dropout)
        return torch.where(kept.any(dim=1, keepdim=True), kept, mask)
