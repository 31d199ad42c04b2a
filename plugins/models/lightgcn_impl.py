"""The ``lightgcn`` model: LightGCN (He et al., SIGIR 2020), trained with BPR as in :mod:`.bpr`.

The graph is the bipartite user–item graph of the distinct training pairs, with adjacency
A = [[0, R], [Rᵀ, 0]] (R the binary user × item matrix) and symmetric normalisation Â = D^-½ A D^-½, D the node
degrees. From the free embeddings E⁽⁰⁾ (users then items), each layer is E⁽ᵏ⁺¹⁾ = Â E⁽ᵏ⁾, a torch sparse
product with no weights and no non-linearity; the final embeddings are the mean of the layers,
E = (E⁽⁰⁾ + … + E⁽ᴷ⁾) / (K + 1), and score(u, i) = e_u · e_i. The L2 penalty applies to the layer-0 embeddings of
the batch, as in the paper. The whole graph is propagated once per training step (and once per validation).

A saved model holds the final embeddings, so loading needs neither the graph nor the training data.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from fusionrec.core.model import FitContext
from fusionrec.plugins.models.bpr_impl import BPRModel, BPRNetwork, Factors, normal
from fusionrec.plugins.models.common import IntArray


def normalised_graph(users: IntArray, items: IntArray, n_users: int, n_items: int) -> torch.Tensor:
    """Â = D^-½ A D^-½ of the user–item graph, a sparse CSR ``(n_users + n_items)²`` matrix (symmetric)."""
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    degree = np.bincount(rows, minlength=n_users + n_items).astype(np.float64)
    inverse_root = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inverse_root, where=degree > 0)
    values = (inverse_root[rows] * inverse_root[cols]).astype(np.float32)
    size = n_users + n_items
    indices = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    coo = torch.sparse_coo_tensor(indices, torch.from_numpy(values), (size, size), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products with dense matrices are stable
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


class SymmetricProduct(torch.autograd.Function):
    """Â X for a symmetric sparse Â: the gradient is Â G, so backward needs no transpose (the slow part of
    torch's generic sparse product)."""

    @staticmethod
    def forward(ctx: Any, graph: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        return graph @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.graph @ grad


class LightGCNNetwork(BPRNetwork):
    """Free layer-0 embeddings, propagated ``layers`` times over the normalised graph."""

    def __init__(self, graph: torch.Tensor, n_users: int, dim: int, layers: int, generator: torch.Generator) -> None:
        super().__init__()
        self.n_users = n_users
        self.layers = layers
        self.graph = graph  # fixed, not a parameter, not saved (a saved model keeps the final embeddings)
        self.embedding = normal(graph.shape[0], dim, generator)

    def propagate(self) -> torch.Tensor:
        """The mean of the layer embeddings, users then items."""
        layer = self.embedding
        total = layer
        for _ in range(self.layers):
            layer = SymmetricProduct.apply(self.graph, layer)
            total = total + layer
        return total / (self.layers + 1)

    def forward(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        final = self.propagate()
        u, i, j = final[users], final[positives + self.n_users], final[negatives + self.n_users]
        ego = self.embedding
        penalty = 0.5 * (
            ego[users].pow(2).sum()
            + ego[positives + self.n_users].pow(2).sum()
            + ego[negatives + self.n_users].pow(2).sum()
        )
        return (u * i).sum(-1), (u * j).sum(-1), penalty

    def factors(self) -> Factors:
        final = self.propagate().detach()
        return Factors(final[: self.n_users].clone(), final[self.n_users :].clone())


class LightGCNModel(BPRModel):
    """LightGCN (He et al. 2020): embeddings propagated over the user–item graph, trained with BPR.

    The mean of the layer embeddings scores by inner product.
    """

    name = "lightgcn"

    def __init__(self, layers: int = 3, lr: float = 5.0e-3, **training: object) -> None:
        super().__init__(lr=lr, **training)  # type: ignore[arg-type]
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.layers = layers

    @property
    def params(self) -> dict[str, object]:
        return {**super().params, "layers": self.layers}

    def build_network(
        self, context: FitContext, users: IntArray, items: IntArray, generator: torch.Generator
    ) -> BPRNetwork:
        graph = normalised_graph(users, items, context.n_users, context.n_items).to(context.device)
        return LightGCNNetwork(graph, context.n_users, self.dim, self.layers, generator)
