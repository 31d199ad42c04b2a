"""The ``concat`` fuser plugin: concatenation, optionally projected by an MLP."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class ConcatParams(Params):
    """Concatenate the modality vectors (absent ones zeroed), optionally followed by an MLP projection."""

    dim: int | None = Field(
        None, gt=0, description="Output size of the projection; null keeps the plain concatenation."
    )
    hidden: tuple[int, ...] = Field((), description="Hidden layer sizes of the projection MLP (ReLU between layers).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before each projection layer.")


@hookimpl
def register_fusers(register: Register) -> None:
    register("concat", "fusionrec.plugins.fusers.concat_impl:ConcatFuser", params=ConcatParams)
