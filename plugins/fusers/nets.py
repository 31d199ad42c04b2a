"""The torch modules behind the built-in ``concat`` and ``attention`` fusers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax


class ConcatFuser(Fuser):
    """Concatenation of the modality vectors, optionally projected by an MLP.

    Absent modalities are zeroed; when projecting, the presence mask is appended to the input so the MLP can tell
    "absent" from "all zeros". The weights are each modality's share of the first layer's input signal,
    ``‖W_m x_m‖ / Σ_j ‖W_j x_j‖`` (with ``W`` the identity for plain concatenation).
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int | None = None,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims)
        total = sum(self.input_dims.values())
        self.project = dim is not None or bool(hidden)
        layers: list[nn.Module] = []
        if self.project:
            sizes = [total + len(self.modalities), *hidden, dim if dim is not None else hidden[-1]]
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
                if i > 0:
                    layers.append(nn.ReLU())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                layers.append(nn.Linear(n_in, n_out))
        self.mlp = nn.Sequential(*layers)
        self.out_dim = sizes[-1] if self.project else total
        self._first: nn.Linear | None = next((m for m in layers if isinstance(m, nn.Linear)), None)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        parts = [features[m] * mask[:, i : i + 1] for i, m in enumerate(self.modalities)]
        joined = torch.cat(parts, dim=1)
        if not self.project:
            contributions = torch.stack([part.norm(dim=1) for part in parts], dim=1)
            return FusionOutput(joined, shares(contributions, mask))
        assert self._first is not None
        contributions = []
        offset = 0
        for part in parts:
            width = part.shape[1]
            weight = self._first.weight[:, offset : offset + width]
            contributions.append((part @ weight.T).norm(dim=1))
            offset += width
        fused = self.mlp(torch.cat([joined, mask.to(joined.dtype)], dim=1))
        return FusionOutput(fused, shares(torch.stack(contributions, dim=1), mask))


class AttentionFuser(Fuser):
    """Inner-product attention over modalities (the seed paper's g_attention, generalised to any modality set).

    Each present modality m is projected into a shared space, ``h_m = W_m x_m``. Its score is the inner product
    of its query with the mean key of the *other* present modalities, ``e_m = <Q h_m, mean_{j≠m} K h_j> / τ``;
    with image and text that is the inner product of projected image and text features. The weights are
    ``a = softmax(e)`` over the present modalities and the fused vector is ``Σ_m a_m h_m``.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int = 128,
        dropout: float = 0.0,
        temperature: float | None = None,
    ) -> None:
        super().__init__(input_dims)
        self.out_dim = dim
        # a list in modality order, not a ModuleDict: modality names like 'type' or 'keys' clash with its attributes
        self.proj = nn.ModuleList([nn.Linear(size, dim) for size in self.input_dims.values()])
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.temperature = temperature if temperature is not None else math.sqrt(dim)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        h = torch.stack(
            [self.dropout(proj(features[m])) for proj, m in zip(self.proj, self.modalities, strict=True)], dim=1
        )  # (B, M, d)
        present = mask.to(h.dtype)
        h = h * present.unsqueeze(-1)
        keys = self.key(h) * present.unsqueeze(-1)
        others = (present.sum(dim=1, keepdim=True) - present).clamp(min=1.0)  # (B, M)
        mean_other_key = (keys.sum(dim=1, keepdim=True) - keys) / others.unsqueeze(-1)
        scores = (self.query(h) * mean_other_key).sum(dim=-1) / self.temperature  # (B, M)
        weights = masked_softmax(scores, mask)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)
        return FusionOutput(fused, weights)


def shares(contributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise non-negative contributions to weights over the present modalities."""
    contributions = contributions * mask
    total = contributions.sum(dim=1, keepdim=True)
    uniform = mask / mask.sum(dim=1, keepdim=True).clamp(min=1)
    # all-zero inputs carry no signal to share: fall back to uniform over what is present
    return torch.where(total > 0, contributions / total.clamp(min=1e-12), uniform.to(contributions.dtype))
