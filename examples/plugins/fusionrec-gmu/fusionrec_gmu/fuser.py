"""The torch module behind ``gmu.gated_unit``: a Gated Multimodal Unit over any number of modalities.

Arevalo, Solorio, Montes-y-Gómez and González, "Gated Multimodal Units for Information Fusion" (ICLR workshop,
2017). The paper's unit fuses two modalities, ``h = z·h_v + (1 − z)·h_t`` with a sigmoid gate ``z``; with M
modalities the gate becomes a softmax over one logit per modality, which for M = 2 is the same thing (a softmax
over two logits is a sigmoid of their difference).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusionrec.core.fusion import Fuser, FusionOutput, masked_softmax


class GatedMultimodalUnit(Fuser):
    """Gated Multimodal Unit (Arevalo et al. 2017), generalised to any number of modalities.

    For each modality m, ``h_m = tanh(W_m x_m)``. The gate sees every input at once,
    ``g = W_z [x_1·mask_1; …; x_M·mask_M; mask]`` (one logit per modality), and ``z = softmax(g)`` over the
    modalities present for the item. The fused vector is ``Σ_m z_m h_m`` and ``z`` is returned as the weights.

    Absent modalities influence nothing: their inputs are replaced by zeros before any layer sees them (so even
    NaN there is harmless), and their gate weight is exactly 0. The presence mask is part of the gate's input,
    so the gate can tell "absent" from "all zeros". An item with no modality present gets a zero vector and
    all-zero weights.

    Args:
        input_dims: modality name → size of its input vectors; fixes the modality order.
        dim: size of the fused vector; every modality is projected to it.
        dropout: dropout probability on the projected vectors ``h_m`` (training only).

    Attributes:
        proj: one ``Linear(input_dims[m], dim)`` per modality, in :attr:`modalities` order (``W_m``).
        gate: ``Linear(Σ_m input_dims[m] + M, M)``, the gate ``W_z``.
        dropout: the dropout applied to each ``h_m``.
    """

    def __init__(self, input_dims: Mapping[str, int], dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__(input_dims)
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.out_dim = dim
        # A ModuleList (not a ModuleDict keyed by modality) so that any modality name is safe, even one that is
        # also an nn.Module attribute ("train", "type", …).
        self.proj = nn.ModuleList(nn.Linear(size, dim) for size in self.input_dims.values())
        n_modalities = len(self.modalities)
        self.gate = nn.Linear(sum(self.input_dims.values()) + n_modalities, n_modalities)
        self.dropout = nn.Dropout(dropout)

    def fuse(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> FusionOutput:
        """Fuse one batch.

        Args:
            features: modality name → ``(batch, input_dims[name])`` float tensor.
            mask: ``(batch, n_modalities)`` bool tensor, true where the modality is present.

        Returns:
            The fused ``(batch, dim)`` vectors and the gate weights ``z`` of shape ``(batch, n_modalities)``.
        """
        inputs = [
            torch.where(mask[:, i : i + 1], features[m], torch.zeros_like(features[m]))
            for i, m in enumerate(self.modalities)
        ]
        hidden = torch.stack(
            [self.dropout(torch.tanh(proj(x))) for proj, x in zip(self.proj, inputs, strict=True)], dim=1
        )  # (batch, M, dim)
        logits = self.gate(torch.cat([*inputs, mask.to(hidden.dtype)], dim=1))  # (batch, M)
        weights = masked_softmax(logits, mask)
        fused = (weights.unsqueeze(-1) * hidden).sum(dim=1)
        return FusionOutput(fused, weights)
