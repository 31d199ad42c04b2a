"""Training on several processes with PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment) every rank runs the same command.
:func:`start` joins the process group from torchrun's environment (``MASTER_ADDR``, ``RANK`` …): backend ``nccl``
when the pipeline trains on GPUs (one GPU per rank, ``cuda:LOCAL_RANK``), ``gloo`` on CPUs. Rank 0 is the only one
that touches the run directory (writer lock, manifest, checkpoints, validation, evaluation); it tells the other
ranks whether there is training to do (:meth:`Ranks.announce`), and after every epoch which state training is in
(early stopping included), so that all ranks stop together.

Negatives across ranks: the sampled softmax all-gathers the user and target-item vectors of every rank's slice of
the global batch (:func:`gather_rows`), so each rank scores against the same in-batch negatives and logQ correction
as one process on the whole batch. See docs/training.md ("Distributed training").
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fusionrec.core.errors import FusionrecError

TIMEOUT_ENV = "FUSIONREC_DIST_TIMEOUT"
"""Seconds a rank waits for the others at a collective (default 1800): the followers wait while rank 0 validates."""


@dataclass
class Ranks:
    """This process's place in a distributed training.

    Attributes:
        rank: this process's rank (0 is the one that writes the run).
        world: the number of processes.
        device: where this rank trains (``cuda:LOCAL_RANK`` with nccl, the CPU with gloo).
        backend: ``nccl`` or ``gloo``.
    """

    rank: int
    world: int
    device: torch.device
    backend: str
    announced: bool = False
    owned: bool = True
    """Whether :func:`start` created the process group (and :func:`stop` destroys it)."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object between this run's own processes)."""
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def announce(self, *, train: bool, error: str | None = None) -> None:
        """Rank 0: tell the other ranks whether the train stage runs (or that rank 0 failed with ``error``)."""
        if self.main and not self.announced:
            self.announced = True
            self.broadcast({"train": train, "error": error})

    def listen(self) -> bool:
        """Another rank: wait for rank 0's word; true when the train stage runs.

        Raises:
            FusionrecError: rank 0 failed before training (its message is repeated here).
        """
        word: dict[str, Any] = self.broadcast(None)
        if word.get("error"):
            raise FusionrecError(f"rank {self.rank}: rank 0 stopped before training: {word['error']}")
        return bool(word["train"])


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """``WORLD_SIZE`` from torchrun's environment (1 outside torchrun).

    Raises:
        FusionrecError: it is set but not a whole number ≥ 1.
    """
    env = os.environ if environ is None else environ
    text = env.get("WORLD_SIZE", "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise FusionrecError(f"WORLD_SIZE={text!r}: expected a whole number ≥ 1 (torchrun sets it; unset it otherwise)")
    return int(text)


def start(device: str, environ: Mapping[str, str] | None = None) -> Ranks | None:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (``None`` for one process: nothing changes).

    Args:
        device: the pipeline's ``train.device`` (``auto``, ``cpu``, ``cuda``): GPUs mean nccl, the CPU gloo.

    Raises:
        FusionrecError: torchrun's variables are missing or inconsistent, or ``cuda`` is asked without enough GPUs.
    """
    env = os.environ if environ is None else environ
    world = world_size(env)
    if world <= 1:
        return None
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise FusionrecError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch distributed training with "
            "`torchrun --nproc_per_node N --no-python fusionrec train PIPELINE.yaml --out DIR`"
        )
    rank, local = int(env["RANK"]), int(env["LOCAL_RANK"])
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local >= torch.cuda.device_count():
            raise FusionrecError(
                f"rank {rank}: LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s); "
                "give torchrun --nproc_per_node at most the number of GPUs (or train.device: cpu for gloo)"
            )
        torch.cuda.set_device(local)
        where, backend = torch.device("cuda", local), "nccl"
    else:
        where, backend = torch.device("cpu"), "gloo"
    owned = not dist.is_initialized()
    if owned:
        seconds = float(env.get(TIMEOUT_ENV, "1800"))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), device=where, backend=backend, owned=owned)


def stop(ranks: Ranks) -> None:
    """Leave the process group :func:`start` joined (a group the caller made is left alone)."""
    if ranks.owned and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Every rank's rows of ``tensor`` concatenated in rank order.

    Ranks may hold different numbers of rows (they are padded for the collective). The other ranks' rows are
    constants; this rank's rows are ``tensor`` itself, so gradients flow into it. A loss computed on the gathered
    rows is the same on every rank, and the sum over ranks of each rank's gradient is its full gradient.
    """
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(ranks.world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in range(ranks.world)]
    dist.all_gather(parts, padded)
    pieces = [part[:size] for part, size in zip(parts, sizes, strict=True)]
    pieces[ranks.rank] = tensor
    return torch.cat(pieces)


def all_sum(values: list[float], ranks: Ranks) -> list[float]:
    """The element-wise sum of ``values`` over the ranks."""
    total = torch.tensor(values, dtype=torch.float64, device=ranks.device)
    dist.all_reduce(total)
    return [float(v) for v in total.tolist()]


def split_batches(count: int, size: int, world: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each global batch of ``size`` over ``count`` examples, as one process cuts them, except
    that a last batch with fewer examples than ranks joins the one before it (every rank gets at least one)."""
    bounds = [(start, min(start + size, count)) for start in range(0, count, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < world:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def my_slice(batch: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (slices in rank order concatenate to the batch)."""
    return torch.tensor_split(batch, ranks.world)[ranks.rank]
