"""Helpers shared by the built-in fusers' implementations: weights from contributions, absent modalities as zero."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fusionrec.core.fusion import Fuser


def shares(contributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise non-negative contributions to weights over the present modalities."""
    contributions = contributions * mask
    total = contributions.sum(dim=1, keepdim=True)
    uniform = mask / mask.sum(dim=1, keepdim=True).clamp(min=1)
    # all-zero inputs carry no signal to share: fall back to uniform over what is present
    return torch.where(total > 0, contributions / total.clamp(min=1e-12), uniform.to(contributions.dtype))


def present_inputs(fuser: Fuser, features: Mapping[str, torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """Each modality's input in :attr:`Fuser.modalities` order, with the rows where it is absent set to zero."""
    return [
        torch.where(mask[:, i : i + 1], features[m], torch.zeros((), dtype=features[m].dtype))
        for i, m in enumerate(fuser.modalities)
    ]


def zero_absent(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, M, d)`` tokens with those of absent modalities set to zero."""
    return torch.where(mask.unsqueeze(-1), tokens, torch.zeros((), dtype=tokens.dtype))
