"""The ``cross_attention`` fuser plugin: multi-head attention among the modality tokens."""

from __future__ import annotations

from pydantic import Field, model_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class CrossAttentionParams(Params):
    """z_m = h_m + MHA(h)_m over the present tokens h_m = W_m x_m; fused = Σ_m a_m z_m, a_m = attention m receives."""

    dim: int = Field(128, gt=0, description="Size of the tokens (the shared space) and of the fused vector.")
    heads: int = Field(4, gt=0, description="Attention heads; must divide dim.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the projected tokens and the attention output (not the weights)."
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> CrossAttentionParams:
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim}), e.g. dim: 128 with heads: 4")
        return self


@hookimpl
def register_fusers(register: Register) -> None:
    register(
        "cross_attention",
        "fusionrec.plugins.fusers.cross_attention_impl:CrossAttentionFuser",
        params=CrossAttentionParams,
    )
