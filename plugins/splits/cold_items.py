"""The ``cold_items`` split plugin: whole items held out, so evaluation measures recommending unseen items."""

from __future__ import annotations

from pydantic import Field, model_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class ColdItemsParams(Params):
    """A seeded share of the items, with all their interactions, held out for test (and for validation)."""

    test: float = Field(
        0.2, gt=0, lt=1, description="Share of the items with interactions whose interactions all go to test."
    )
    valid: float = Field(
        0.1, ge=0, lt=1, description="Share of the items with interactions whose interactions all go to validation."
    )
    seed: int = Field(0, description="Seed of the choice of items; the same seed gives the same split.")

    @model_validator(mode="after")
    def _room_for_training(self) -> ColdItemsParams:
        if self.valid + self.test >= 1:
            total = self.valid + self.test
            raise ValueError(f"valid + test must be below 1 so that training keeps items (got {total})")
        return self


@hookimpl
def register_splits(register: Register) -> None:
    register("cold_items", "fusionrec.plugins.splits.protocols_impl:ColdItemsSplit", params=ColdItemsParams)
