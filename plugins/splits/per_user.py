"""The per-user split plugins: ``temporal`` (the default protocol), ``random`` and ``leave_last_out``.

Each divides every user's interactions into train, validation and test; users with too few interactions stay in
train only. The rules, exactly, are in docs/configuration.md and in each factory's docstring.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class _Shares(Params):
    valid: float = Field(0.1, ge=0, lt=1, description="Share of each user's interactions for validation.")
    test: float = Field(0.1, ge=0, lt=1, description="Share of each user's interactions for test.")
    min_interactions: int = Field(
        5, ge=1, description="Users with fewer interactions than this stay in train only (not evaluated)."
    )

    @model_validator(mode="after")
    def _room_for_training(self) -> _Shares:
        if self.valid + self.test >= 1:
            raise ValueError(f"valid + test must be below 1 so that training keeps data (got {self.valid + self.test})")
        return self


TIE_BREAK_HELP = (
    "Order of a user's interactions with equal timestamps (e.g. a basket bought the same day): file_order keeps the "
    "order of the data file (as RecBole does); item_id sorts them by item id (fusionrec's order before issue 17)."
)


class TemporalParams(_Shares):
    """Per user, chronological: the last interactions to test, the ones before them to validation."""

    tie_break: Literal["file_order", "item_id"] = Field("file_order", description=TIE_BREAK_HELP)


class RandomParams(_Shares):
    """Per user, at random (seeded): the same shares and minimum as temporal."""

    seed: int = Field(0, description="Seed of the random choice; the same seed gives the same split.")


class LeaveLastOutParams(Params):
    """Per user: the last interaction to test, the one before it to validation."""

    valid: bool = Field(True, description="Hold out the second-last interaction for validation.")
    min_interactions: int = Field(
        3, ge=2, description="Users with fewer interactions than this stay in train only (not evaluated)."
    )
    tie_break: Literal["file_order", "item_id"] = Field("file_order", description=TIE_BREAK_HELP)

    @model_validator(mode="after")
    def _room_for_training(self) -> LeaveLastOutParams:
        if self.valid and self.min_interactions < 3:
            raise ValueError("min_interactions must be at least 3 with valid: true (one each for train, valid, test)")
        return self


@hookimpl
def register_splits(register: Register) -> None:
    register("temporal", "fusionrec.plugins.splits.protocols_impl:TemporalSplit", params=TemporalParams)
    register("random", "fusionrec.plugins.splits.protocols_impl:RandomSplit", params=RandomParams)
    register("leave_last_out", "fusionrec.plugins.splits.protocols_impl:LeaveLastOutSplit", params=LeaveLastOutParams)
