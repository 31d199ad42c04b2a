"""The ``logistic`` ranker plugin: the seed paper's classifier P = σ(W·F + b) over (user, candidate) features."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class LogisticParams(Params):
    """Logistic regression: P = σ(W·[user, item, user ⊙ item, modality weights, retrieval score, extra] + b)."""

    epochs: int = Field(100, ge=1, description="Passes over the training pairs (full-batch: optimiser steps).")
    lr: float = Field(0.05, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1.0e-4, ge=0, description="AdamW's decoupled weight decay.")
    batch_size: int | None = Field(
        None, gt=0, description="Pairs per optimiser step, shuffled each epoch; null: the whole training set."
    )
    objective: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description=(
            "pointwise: binary cross-entropy over every pair (the seed's); pairwise: BPR, -log σ(f(x+) - f(x-)) for "
            "each positive and a negative drawn from the same user list (RankingFeatures.groups)."
        ),
    )
    seed: int = Field(0, ge=0, description="Seed of initialisation and shuffling (same seed, same ranker).")


@hookimpl
def register_rankers(register: Register) -> None:
    register("logistic", "fusionrec.plugins.rankers.classifier_impl:LogisticRanker", params=LogisticParams)
