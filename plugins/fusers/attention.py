"""The ``attention`` fuser plugin: the seed paper's inner-product attention over modalities."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class AttentionParams(Params):
    """Attention over modalities: weights a = softmax(e), e the inner products of projected image and text features."""

    dim: int = Field(128, gt=0, description="Size of the shared space the modalities are projected into.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the projected modality vectors.")
    temperature: float | None = Field(
        None, gt=0, description="Divides the scores before the softmax; null means sqrt(dim)."
    )
    normalize: bool = Field(
        False,
        description="LayerNorm each modality's projection before scoring and fusing (false: the seed's formula).",
    )
    modality_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="While training, drop each present modality of an item with this probability (one always kept).",
    )


@hookimpl
def register_fusers(register: Register) -> None:
    register("attention", "fusionrec.plugins.fusers.attention_impl:AttentionFuser", params=AttentionParams)
