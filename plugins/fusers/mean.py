"""The ``mean`` fuser plugin: the mean of the modalities' linear projections."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class MeanParams(Params):
    """fused = (1/|P|) Σ_{m∈P} W_m x_m over the present modalities P; every present modality weighs 1/|P|."""

    dim: int = Field(128, gt=0, description="Size of the shared space the modalities are projected into.")


@hookimpl
def register_fusers(register: Register) -> None:
    register("mean", "fusionrec.plugins.fusers.mean_impl:MeanFuser", params=MeanParams)
