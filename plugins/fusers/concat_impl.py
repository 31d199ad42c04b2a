"""The torch module behind the built-in ``concat`` fuser."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput
from fusionrec.plugins.fusers.common import shares


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
