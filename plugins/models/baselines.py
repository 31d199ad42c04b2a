"""The baseline models plugin: ``popularity``, ``itemknn``, ``bpr_mf``, ``lightgcn`` and ``vbpr``.

Each is a whole recommender (:class:`fusionrec.core.model.Model`) that a pipeline's ``model`` section selects in
place of the two-tower model. This module stays light: parameter models and one hook registering lazy
``"module:attribute"`` factories, so listing plugins and validating pipelines never import torch.
"""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class PopularityParams(Params):
    """Score of an item = its number of interactions in the history known at prediction time, the same for every
    user (train when validating, train + valid when testing)."""


class ItemKNNParams(Params):
    """Item-based k-nearest neighbours: cosine similarity of the items' training user sets, the top neighbours per
    item kept; a user's score of an item is the sum of its similarities to the items in the user's history."""

    neighbours: int = Field(100, ge=1, description="Most similar items kept per item (the k of k-NN).")
    shrink: float = Field(
        0.0,
        ge=0.0,
        description="Shrinkage added to the cosine's denominator, |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink): "
        "damps similarities resting on few common users.",
    )


class BPRTrainingParams(Params):
    """Training settings shared by the models trained with the BPR loss (uniform negative sampling, AdamW,
    early stopping on validation Recall@20)."""

    dim: int = Field(64, ge=1, description="Size of the user and item embeddings.")
    lr: float = Field(1.0e-3, gt=0, description="AdamW learning rate.")
    epochs: int = Field(200, ge=1, description="Maximum number of passes over the training interactions.")
    batch_size: int = Field(2048, ge=1, description="(user, positive, negative) triples per optimisation step.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW (decoupled) weight decay on every parameter.")
    reg: float = Field(
        1.0e-4,
        ge=0,
        description="L2 penalty on the embeddings (and biases) of each batch's users and items, "
        "reg × ½‖θ_batch‖² / batch size, as in the BPR and LightGCN papers.",
    )
    patience: int = Field(10, ge=1, description="Stop after this many validations in a row without a better Recall@20.")
    eval_every: int = Field(1, ge=1, description="Validate (and log the validation metrics) every this many epochs.")


class BPRMFParams(BPRTrainingParams):
    """Matrix factorisation trained with BPR (Rendle et al. 2009): score(u, i) = p_u · q_i."""


class LightGCNParams(BPRTrainingParams):
    """LightGCN (He et al. 2020): embeddings propagated over the symmetrically normalised user–item graph, the
    mean of the layers scores by inner product; trained with BPR."""

    lr: float = Field(5.0e-3, gt=0, description="AdamW learning rate.")
    layers: int = Field(3, ge=1, description="Propagation layers K; the final embedding is the mean of layers 0..K.")


class VBPRParams(BPRTrainingParams):
    """VBPR (He & McAuley 2016): score(u, i) = β_i + γ_u · γ_i + θ_u · (E f_i) + β' · f_i, with f_i the item's
    vector of one modality (image by default); trained with BPR."""

    modality: str = Field(
        "image",
        min_length=1,
        description="Which item features f_i to use: a modality key of the `encoders` section. Items without "
        "that modality get f_i = 0.",
    )
    lr: float = Field(5.0e-3, gt=0, description="AdamW learning rate.")
    visual_dim: int = Field(64, ge=1, description="Size of θ_u and of the projected features E f_i.")


@hookimpl
def register_models(register: Register) -> None:
    register("popularity", "fusionrec.plugins.models.popularity_impl:PopularityModel", params=PopularityParams)
    register("itemknn", "fusionrec.plugins.models.itemknn_impl:ItemKNNModel", params=ItemKNNParams)
    register("bpr_mf", "fusionrec.plugins.models.bpr_impl:BPRMFModel", params=BPRMFParams)
    register("lightgcn", "fusionrec.plugins.models.lightgcn_impl:LightGCNModel", params=LightGCNParams)
    register("vbpr", "fusionrec.plugins.models.vbpr_impl:VBPRModel", params=VBPRParams)
