"""The ``lightgbm`` ranker plugin: gradient-boosted trees with LightGBM's ``lambdarank`` (learning to rank)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class LightGBMParams(Params):
    """LightGBM over [user, item, user ⊙ item, user · item, modality weights, retrieval score, extra]."""

    objective: Literal["lambdarank", "binary"] = Field(
        "lambdarank",
        description=(
            "lambdarank: listwise, optimises NDCG within each user list (RankingFeatures.groups; all pairs form "
            "one list when there are none); binary: pointwise log-loss."
        ),
    )
    num_boost_round: int = Field(50, ge=1, description="Boosting rounds (trees).")
    learning_rate: float = Field(0.05, gt=0, description="Shrinkage of each tree.")
    num_leaves: int = Field(15, ge=2, description="Maximum leaves per tree.")
    min_data_in_leaf: int = Field(50, ge=1, description="Minimum training pairs in a leaf.")
    feature_fraction: float = Field(1.0, gt=0, le=1, description="Share of the features each tree may use.")
    lambda_l2: float = Field(1.0, ge=0, description="L2 regularisation of the leaf values.")
    vectors: bool = Field(
        False,
        description=(
            "Also feed the raw user and item vector columns and user ⊙ item; false keeps user · item, the modality "
            "weights, the retrieval score and the extra features (fewer, stronger columns)."
        ),
    )
    num_threads: int = Field(1, ge=1, description="Threads LightGBM trains and predicts with (fixed: deterministic).")
    seed: int = Field(0, ge=0, description="Seed of LightGBM's sampling (same seed and data, same trees).")


@hookimpl
def register_rankers(register: Register) -> None:
    register("lightgbm", "fusionrec.plugins.rankers.lightgbm_impl:LightGBMRanker", params=LightGBMParams)
