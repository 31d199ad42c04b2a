"""One batch's loss and gradients, in one process or as one rank of ``torchrun --nproc_per_node N`` (gloo).

``python tests/ddp_loss_worker.py LOSS[+basket] OUT``: writes ``OUT/rank-<rank>.pt`` with the loss and every parameter's
gradient after one backward pass, the batch split over the ranks as the trainer splits a global batch (``+basket``:
each user's interactions form two baskets, of 2 and 3 items, read by a ``basket`` tower). Used by
tests/test_distributed.py to check that the split loss and gradients equal the whole batch's in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from fusionrec.core.assembly.config import TrainConfig
from fusionrec.core.engine import distributed
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.trainer import Trainer
from fusionrec.core.engine.two_tower import Histories, ItemTower, TwoTower
from fusionrec.plugins.fusers.concat_impl import ConcatFuser


class MeanTower(nn.Module):
    """A small user tower: a linear map of the mean of the history's item vectors."""

    max_history = 4
    basket = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        mean = vectors.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.linear(mean)


def trainer(loss: str, ranks: distributed.Ranks | None) -> Trainer:
    torch.manual_seed(0)
    loss, _, basket = loss.partition("+")
    n_users, n_items, per_user, dim = 6, 9, 5, 8
    items = torch.randint(0, n_items, (n_users * per_user,), generator=torch.Generator().manual_seed(1))
    offsets = torch.arange(0, n_users * per_user + 1, per_user)
    starts = torch.cat([torch.stack([offsets[:-1], offsets[:-1] + 2], 1).flatten(), offsets[-1:]])
    history = Histories(items, offsets, starts if basket else None)
    features = {"x": (torch.randn(n_items, 5).numpy(), torch.ones(n_items, dtype=torch.bool).numpy())}
    fuser = ConcatFuser({"x": 5}, dim=dim)
    tower = MeanTower(dim)
    tower.basket = bool(basket)
    model = TwoTower(ItemTower(features, fuser, n_items, dim, True), tower, normalize=True)
    config = TrainConfig(loss=loss, batch_size=n_users * per_user, device="cpu", seed=0)
    return Trainer(model, history, config, RunDir(Path("unused"), {}), None, ranks=ranks)


def main(loss: str, out: Path) -> None:
    ranks = distributed.start("cpu")
    train = trainer(loss, ranks)
    train.wrap()
    positions = torch.tensor([1, 2, 3, 4, 7, 8, 9, 11, 13, 14, 16, 18, 21, 22, 24, 26, 27, 29])
    if ranks is not None:
        positions = distributed.my_slice(positions, ranks)
    value, differentiated = train.objective(positions, torch.Generator().manual_seed(0))
    differentiated.backward()  # type: ignore[no-untyped-call]
    grads = {name: p.grad.clone() for name, p in train.model.named_parameters() if p.grad is not None}
    rank = ranks.rank if ranks is not None else 0
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"loss": value.detach(), "grads": grads}, out / f"rank-{rank}.pt")
    if ranks is not None:
        distributed.stop(ranks)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
