"""The ``gmu`` plugin: registers the ``gmu.gated_unit`` fuser.

fusionrec imports this module at start-up through the entry point ``gmu = "fusionrec_gmu.plugin"`` (group
``fusionrec``), so it stays light: a parameter model and a hook. The torch module is registered as the lazy
factory ``"fusionrec_gmu.fuser:GatedMultimodalUnit"`` and imported only when a pipeline builds it; listing
plugins and validating pipelines never import torch.
"""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl

fusionrec_hook_version = 1
"""The fusionrec hook version this plugin was built for (``fusionrec.registry.HOOK_VERSION``); an older fusionrec
refuses the plugin with a message naming both versions instead of failing on a hook it lacks."""

FUSER_NAME = "gmu.gated_unit"
"""The registered name: the entry-point name (``gmu``), a dot, then the component's own name."""


class GatedUnitParams(Params):
    """Gated Multimodal Unit: h_m = tanh(W_m x_m), fused = Σ_m z_m h_m with gates z = softmax(W_z [x; mask])."""

    dim: int = Field(64, gt=0, description="Size of the fused vector (each modality is projected to it).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the projected modality vectors h_m.")


@hookimpl
def register_fusers(register: Register) -> None:
    """Register the ``gmu.gated_unit`` fuser.

    Args:
        register: fusionrec's callback; the factory will be called as
            ``GatedMultimodalUnit(input_dims={...}, dim=..., dropout=...)``.
    """
    register(FUSER_NAME, "fusionrec_gmu.fuser:GatedMultimodalUnit", params=GatedUnitParams)
