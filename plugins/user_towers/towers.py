"""The built-in user towers plugin: ``mean``, ``attention_pool``, ``gru``, ``transformer`` and ``id``.

This module stays light (parameter models and one hook); the torch implementations are lazy factories in
:mod:`~fusionrec.plugins.user_towers.pooling_impl`, :mod:`~fusionrec.plugins.user_towers.recurrent_impl` and
:mod:`~fusionrec.plugins.user_towers.sasrec_impl`, imported only when a pipeline builds one.
"""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl

PACKAGE = "fusionrec.plugins.user_towers"


class HistoryParams(Params):
    """Parameters every built-in tower that reads histories shares."""

    max_history: int = Field(
        50,
        ge=1,
        description="How many of the user's most recent interactions (baskets with basket: true) the tower reads "
        "(older ones are cut).",
    )
    user_ids: bool = Field(
        False,
        description="Add a learned embedding of the user id (one row per user, starting at zero) to the user "
        "vector; helps users with long histories, does nothing for users unseen in training.",
    )
    basket: bool = Field(
        False,
        description="Read a user's interactions with one timestamp (a basket) as one step of the history: the mean "
        "of their item vectors (at most the last max_history of them), one position. Training never predicts an item "
        "from its own basket (its history ends at the basket before). A history without timestamps (a session sent "
        "to the server) is one item per step.",
    )


class MeanParams(HistoryParams):
    """u = mean of the history's item vectors (W·mean + b with project), plus the user-id embedding if any."""

    project: bool = Field(
        False, description="Follow the mean with a learned linear layer (item_dim → item_dim, starting as identity)."
    )


class AttentionPoolParams(HistoryParams):
    """u = Σ_j a_j h_j, a = softmax over the real items of <q, W_k h_j>/sqrt(d) (+ a learned recency bias)."""

    recency: bool = Field(
        True, description="Add a learned bias per recency (newest item, the one before, …) to the attention scores."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the history vectors before the keys.")


class GruParams(HistoryParams):
    """A GRU over the history, oldest first; u = W·h_last + b, the last hidden state projected to item_dim."""

    hidden: int | None = Field(None, gt=0, description="Size of the GRU's hidden state; null means item_dim.")
    layers: int = Field(1, ge=1, le=8, description="Stacked GRU layers.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the input item vectors and between stacked GRU layers."
    )


class TransformerParams(HistoryParams):
    """SASRec: pre-LayerNorm causal self-attention blocks over the history with learned positional (recency)
    embeddings; u = the output at the most recent position."""

    layers: int = Field(2, ge=1, le=12, description="Number of transformer blocks.")
    heads: int = Field(2, ge=1, description="Attention heads per block; item_dim must be divisible by it.")
    ffn_factor: int = Field(
        4, ge=1, le=16, description="Width of each block's feed-forward layer, as a multiple of item_dim."
    )
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout on the input, the attention weights and each block's outputs."
    )


class IdParams(Params):
    """u = E[user]: one learned vector per user id and no history (the user side of BPR-MF)."""

    init_std: float = Field(0.1, gt=0.0, description="Standard deviation of the normal initialisation.")


@hookimpl
def register_user_towers(register: Register) -> None:
    register("mean", f"{PACKAGE}.pooling_impl:MeanTower", params=MeanParams)
    register("attention_pool", f"{PACKAGE}.pooling_impl:AttentionPoolTower", params=AttentionPoolParams)
    register("gru", f"{PACKAGE}.recurrent_impl:GruTower", params=GruParams)
    register("transformer", f"{PACKAGE}.sasrec_impl:TransformerTower", params=TransformerParams)
    register("id", f"{PACKAGE}.pooling_impl:IdTower", params=IdParams)
