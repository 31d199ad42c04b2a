"""The ``gated`` fuser plugin: learned per-modality gates over the projected modalities."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class GatedParams(Params):
    """fused = Σ_m g_m W_m x_m, g = softmax over the present modalities of an MLP reading every W_m x_m."""

    dim: int = Field(128, gt=0, description="Size of the shared space the modalities are projected into.")
    hidden: int = Field(64, gt=0, description="Hidden size of the gate network.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the projected modalities and in the gate network."
    )


@hookimpl
def register_fusers(register: Register) -> None:
    register("gated", "fusionrec.plugins.fusers.gated_impl:GatedFuser", params=GatedParams)
