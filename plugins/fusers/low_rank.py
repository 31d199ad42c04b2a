"""The ``low_rank`` fuser plugin: low-rank multimodal fusion (LMF, Liu et al. 2018)."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class LowRankParams(Params):
    """fused = Σ_r λ_r Π_m [x_m, 1] W_m^(r) + b; weight of m: how far the output moves when m is dropped."""

    dim: int = Field(128, gt=0, description="Size of the fused vector.")
    rank: int = Field(4, gt=0, description="Rank of the factorisation: factors per modality.")


@hookimpl
def register_fusers(register: Register) -> None:
    register("low_rank", "fusionrec.plugins.fusers.low_rank_impl:LowRankFuser", params=LowRankParams)
