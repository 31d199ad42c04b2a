"""The ``vbpr`` model: VBPR (He & McAuley, AAAI 2016), trained with BPR as in :mod:`.bpr`.

score(u, i) = β_i + γ_u · γ_i + θ_u · (E f_i) + β' · f_i

with f_i the item's vector of one modality (``context.features[modality]``, image by default), E a learned
``visual_dim × F`` projection and β' a learned visual bias vector. Items without that modality get f_i = 0, so
only their latent factors and bias score them; items without training interactions still get the visual terms,
which is what lets VBPR rank new items. The features are divided by the mean L2 norm of the present rows (one
scalar for all items), so their scale does not depend on the encoder; directions and relative norms are kept.

The L2 penalty applies to the batch's γ_u, θ_u, γ_i, β_i (for positives and negatives); E and β' are shared by
every item and regularised by ``weight_decay`` only. A saved model holds the final vectors ([γ_u, θ_u] per user,
[γ_i, E f_i] per item) and the bias β_i + β' · f_i, so loading needs no features.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext
from fusionrec.plugins.models.bpr_impl import INIT_STD, BPRModel, BPRNetwork, Factors, normal
from fusionrec.plugins.models.common import IntArray

log = logging.getLogger(__name__)


def item_features(context: FitContext, modality: str) -> torch.Tensor:
    """The ``(n_items, F)`` float32 features of ``modality``: absent rows zero, scaled to mean norm 1.

    Raises:
        ConfigError: the pipeline has no features of that modality (at ``model.modality``).
        FusionrecError: the features do not match the items (wrong shape, non-finite values).
    """
    if modality not in context.features:
        available = ", ".join(sorted(context.features)) or "none (the pipeline has no encoders section)"
        raise ConfigError.at(
            ("model", "modality"),
            f"vbpr needs item features of modality '{modality}', but the item features are: {available}. "
            f"Add an encoder for it under `encoders: {{{modality}: ...}}`, or set model.modality to one of the "
            "encoded modalities.",
        )
    vectors, present = context.features[modality]
    vectors, present = np.asarray(vectors), np.asarray(present, dtype=bool)
    if vectors.ndim != 2 or vectors.shape[0] != context.n_items or present.shape != (context.n_items,):
        raise FusionrecError(
            f"vbpr: the '{modality}' features have shape {vectors.shape} with a presence mask of shape "
            f"{present.shape}; expected ({context.n_items}, dim) and ({context.n_items},), one row per item"
        )
    features = torch.from_numpy(np.where(present[:, None], vectors, np.float32(0)).astype(np.float32))
    if not torch.isfinite(features).all():
        raise FusionrecError(f"vbpr: the '{modality}' features of some present items are NaN or infinite")
    if not present.any():
        log.warning("vbpr: no item has '%s' features; the visual terms are all zero (VBPR becomes BPR-MF)", modality)
        return features
    norms = features[torch.tensor(present)].norm(dim=1)
    scale = float(norms.mean())
    return features / scale if scale > 0 else features


class VBPRNetwork(BPRNetwork):
    """β_i + γ_u · γ_i + θ_u · (E f_i) + β' · f_i."""

    features: torch.Tensor

    def __init__(
        self, features: torch.Tensor, n_users: int, dim: int, visual_dim: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        n_items, width = features.shape
        self.register_buffer("features", features, persistent=False)
        self.gamma_user = normal(n_users, dim, generator)
        self.gamma_item = normal(n_items, dim, generator)
        self.theta_user = normal(n_users, visual_dim, generator)
        self.beta_item = nn.Parameter(torch.zeros(n_items))
        self.projection = nn.Parameter(torch.randn(width, visual_dim, generator=generator) * INIT_STD)  # Eᵀ
        self.beta_visual = nn.Parameter(torch.zeros(width))

    def forward(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gamma_u, theta_u = self.gamma_user[users], self.theta_user[users]
        penalty = 0.5 * (gamma_u.pow(2).sum() + theta_u.pow(2).sum())
        scores = []
        for items in (positives, negatives):
            features = self.features[items]
            gamma_i, beta_i = self.gamma_item[items], self.beta_item[items]
            visual = features @ self.projection
            scores.append(
                beta_i + (gamma_u * gamma_i).sum(-1) + (theta_u * visual).sum(-1) + features @ self.beta_visual
            )
            penalty = penalty + 0.5 * (gamma_i.pow(2).sum() + beta_i.pow(2).sum())
        return scores[0], scores[1], penalty

    def factors(self) -> Factors:
        features = self.features
        user = torch.cat([self.gamma_user, self.theta_user], dim=1)
        item = torch.cat([self.gamma_item, features @ self.projection], dim=1)
        bias = self.beta_item + features @ self.beta_visual
        return Factors(user.detach().clone(), item.detach().clone(), bias.detach().clone())


class VBPRModel(BPRModel):
    """VBPR (He & McAuley 2016): BPR-MF plus terms on the item's features of one modality.

    score(u, i) = β_i + γ_u · γ_i + θ_u · (E f_i) + β' · f_i, with f_i the item's vector of that modality.
    """

    name = "vbpr"

    def __init__(self, modality: str = "image", visual_dim: int = 64, lr: float = 5.0e-3, **training: object) -> None:
        super().__init__(lr=lr, **training)  # type: ignore[arg-type]
        if visual_dim < 1 or not modality:
            raise ValueError(f"visual_dim must be at least 1 and modality non-empty, got {visual_dim}, {modality!r}")
        self.modality = modality
        self.visual_dim = visual_dim

    @property
    def params(self) -> dict[str, object]:
        return {**super().params, "modality": self.modality, "visual_dim": self.visual_dim}

    def build_network(
        self, context: FitContext, users: IntArray, items: IntArray, generator: torch.Generator
    ) -> BPRNetwork:
        features = item_features(context, self.modality)
        return VBPRNetwork(features, context.n_users, self.dim, self.visual_dim, generator)
