"""The fuser interface: F_fusion = g(F_image, F_text, …) with per-modality weights that explain it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn


class FusionOutput(NamedTuple):
    """What a fuser returns.

    Attributes:
        fused: ``(batch, out_dim)`` float tensor, the item's content vector.
        weights: ``(batch, n_modalities)`` non-negative weights in :attr:`Fuser.modalities` order; each row sums
            to 1 over the modalities present for that item and is 0 for absent ones (all zeros when none is
            present). They say how much each modality contributed, so every recommendation can be explained.
    """

    fused: torch.Tensor
    weights: torch.Tensor


class Fuser(nn.Module):
    """Combines per-modality feature vectors into one vector.

    Factories are called as ``factory(input_dims=..., **params)``; ``input_dims`` maps each modality name to the
    size of its encoder's vectors and fixes the modality order.

    Attributes:
        modalities: modality names, in the order of the weight columns.
        input_dims: size of each modality's input vectors.
        out_dim: size of the fused vectors.
    """

    modalities: tuple[str, ...]
    input_dims: dict[str, int]
    out_dim: int

    def __init__(self, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("a fuser needs at least one modality in input_dims")
        for name, size in input_dims.items():
            if not isinstance(size, int) or size <= 0:
                raise ValueError(f"input_dims[{name!r}] must be a positive integer, got {size!r}")
        self.input_dims = dict(input_dims)
        self.modalities = tuple(self.input_dims)

    def forward(
        self, features: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor] | None = None
    ) -> FusionOutput:
        return self.fuse(features, self.full_mask(features, mask))

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        """Fuse one batch.

        Args:
            features: modality name → ``(batch, input_dims[name])`` tensor. Rows of absent modalities may hold
                anything (zeros, typically); they must not influence the result.
            mask: ``(batch, n_modalities)`` bool tensor, true where the modality is present.
        """
        raise NotImplementedError

    def full_mask(self, features: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """Check the inputs and stack the per-modality masks into one ``(batch, n_modalities)`` bool tensor."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"features are missing modalities {missing}; this fuser expects {list(self.modalities)}")
        batch = features[self.modalities[0]].shape[0]
        for name in self.modalities:
            shape = tuple(features[name].shape)
            if shape != (batch, self.input_dims[name]):
                raise ValueError(f"features[{name!r}] has shape {shape}, expected ({batch}, {self.input_dims[name]})")
        device = features[self.modalities[0]].device
        if mask is None:
            return torch.ones(batch, len(self.modalities), dtype=torch.bool, device=device)
        columns = [
            mask[m].to(torch.bool) if m in mask else torch.ones(batch, dtype=torch.bool, device=device)
            for m in self.modalities
        ]
        return torch.stack(columns, dim=1)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` restricted to ``mask``; rows with nothing present come out as all zeros."""
    filled = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(filled, dim=dim)
    return torch.nan_to_num(weights, nan=0.0) * mask
