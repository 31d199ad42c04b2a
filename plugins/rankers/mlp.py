"""The ``mlp`` ranker plugin: an MLP classifier over (user, candidate) features."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class MLPParams(Params):
    """P = σ(MLP([user, item, user ⊙ item, modality weights, retrieval score, extra])), ReLU and dropout between."""

    hidden: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        (128, 64), description="Hidden layer sizes (each > 0); [] is logistic regression."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout after each hidden layer (training only).")
    epochs: int = Field(20, ge=1, description="Passes over the training pairs.")
    lr: float = Field(3.0e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1.0e-4, ge=0, description="AdamW's decoupled weight decay.")
    batch_size: int | None = Field(
        256, gt=0, description="Pairs per optimiser step, shuffled each epoch; null: the whole training set."
    )
    objective: Literal["pointwise", "pairwise"] = Field(
        "pointwise",
        description=(
            "pointwise: binary cross-entropy over every pair (the seed's); pairwise: BPR, -log σ(f(x+) - f(x-)) for "
            "each positive and a negative drawn from the same user list (RankingFeatures.groups)."
        ),
    )
    seed: int = Field(0, ge=0, description="Seed of initialisation, shuffling and dropout (same seed, same ranker).")


@hookimpl
def register_rankers(register: Register) -> None:
    register("mlp", "fusionrec.plugins.rankers.classifier_impl:MLPRanker", params=MLPParams)
