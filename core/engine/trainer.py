"""The two-tower training loop: next-item prediction from the history before each training interaction.

Every training interaction is a target; the user tower reads the user's items before it (at most
``max_history``), so training matches prediction, where the tower reads everything known. Sequential towers
(``encode_sequence``) are trained SASRec-style instead: each user's sequence is cut into windows, and every position
of a window predicts the next item in one pass.

A ``basket`` tower (equal timestamps of one user form one step of the history) is trained on baskets: the history of
a target ends at the basket before the target's (never at another item of its own basket), sequential windows are
cut in baskets and every item of the next basket is a target of a position; in the sampled softmax, the targets
read from the same history (the same basket) are not each other's negatives.

Losses: ``sampled_softmax`` (the batch's other targets are the negatives, minus log of their training frequency:
the logQ correction of Yi et al. 2019), ``softmax`` (the whole catalogue) and ``bpr`` (one uniform negative).
AdamW; early stopping on validation Recall@20; a checkpoint after every epoch, so ``--resume`` continues a killed
run. Randomness is re-seeded from ``(seed, epoch)`` at the start of each epoch, so a resumed run draws the same
batches, negatives and dropout masks as an uninterrupted one and ends with the same metrics.

Under ``torchrun`` (:mod:`fusionrec.core.engine.distributed`) ``train.batch_size`` is the global batch: every rank
draws the same order, takes its contiguous slice of each global batch and trains the towers wrapped in
``DistributedDataParallel``; the sampled softmax all-gathers the slices' vectors, so each loss is the global
batch's, as in one process. Rank 0 alone validates, checkpoints and writes the run, and broadcasts where training
stands after each epoch.

A :class:`Trainer` without ``validate`` trains a fixed number of epochs and keeps the last one's weights: that is
the refit stage (``train.refit``: the selected number of epochs again, from scratch, on train + valid). Each stage
has its own manifest entry and file names (``refit-checkpoint-<epoch>.pt``, ``refit-epochs.jsonl``), so the two
never collide and either resumes after a kill.
"""

from __future__ import annotations

import inspect
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fusionrec.core.assembly.config import TrainConfig
from fusionrec.core.engine import distributed
from fusionrec.core.engine.distributed import Ranks
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.two_tower import Baskets, Histories, TwoTower

CHECKPOINT = "checkpoint-{epoch}.pt"
BEST = "best-{epoch}.pt"
EPOCHS = "epochs.jsonl"
SELECT = "recall@20"
"""The validation metric that early stopping and model selection use."""

REFIT_PREFIX = "refit-"
"""File-name prefix of the refit stage's checkpoint and epoch log."""

Validate = Callable[[TwoTower], dict[str, float]]
Progress = Callable[[int, int, float], None]
"""``progress(step, steps, loss)``, called after each optimisation step."""


@dataclass
class TrainState:
    """Where training stands; saved in the checkpoint."""

    epoch: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    bad_epochs: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "log": self.log,
            "stopped": self.stopped,
        }


class Towers(nn.Module):
    """One training step's forward pass through both towers: what DistributedDataParallel wraps.

    Returns the user vectors of the batch's targets and the vectors of the items the batch needs (``needed``; all
    items when ``None``). In sequential mode ``keep`` selects the targets: ``(B, L)``, or ``(B, L, width)`` with
    baskets (every item of the next basket is a target of a position).
    """

    def __init__(self, model: TwoTower, sequential: bool) -> None:
        super().__init__()
        self.model = model
        self.sequential = sequential

    def forward(
        self, needed: torch.Tensor | None, history: torch.Tensor, users: torch.Tensor, keep: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        item_vectors, _ = self.model.item_vectors(needed)
        if self.sequential:
            assert keep is not None
            states = self.model.user_sequence(item_vectors, history, users)
            if keep.dim() == 3:
                states = states.unsqueeze(2).expand(-1, -1, keep.shape[2], -1)
            return states[keep], item_vectors
        return self.model.user_vectors(item_vectors, history, users), item_vectors


def not_negatives(targets: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """``(n, n)`` bool: the in-batch targets that are not negatives of a row: other copies of its target and, with
    ``groups``, the targets read from the same user vector (its basket's other items); never the diagonal."""
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    if groups is not None:
        same |= groups.unsqueeze(0) == groups.unsqueeze(1)
    same.fill_diagonal_(False)  # another copy of the target is not a negative
    return same


def device_of(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class Trainer:
    """Trains a :class:`TwoTower` on the training histories, checkpointing into a run directory.

    Args:
        validate: scores the model on validation after every epoch (early stopping, best-epoch selection);
            ``None``: no validation, exactly ``epochs`` epochs, the last epoch's weights (the refit stage).
        stage: the run manifest's stage that records the checkpoint (``"train"``, ``"refit"``).
        prefix: prepended to the checkpoint, best-weights and epoch-log file names.
        epochs: the number of epochs; ``None``: ``config.epochs``.
        ranks: under torchrun, this process's rank: each rank trains on its slice of every global batch
            (``config.batch_size`` examples over all ranks) with DistributedDataParallel; only rank 0 validates and
            touches ``run``, and it broadcasts the training state after every epoch, so all ranks stop together.
    """

    def __init__(
        self,
        model: TwoTower,
        train: Histories,
        config: TrainConfig,
        run: RunDir,
        validate: Validate | None,
        *,
        epoch_done: Callable[[dict[str, Any]], None] | None = None,
        stage: str = "train",
        prefix: str = "",
        epochs: int | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.ranks = ranks
        self.writes = ranks is None or ranks.main
        self.device = device_of(config) if ranks is None else ranks.device
        self.model = model.to(self.device)
        self.train = train
        self.config = config
        self.run = run
        self.validate = validate
        self.epoch_done = epoch_done
        self.stage = stage
        self.prefix = prefix
        self.epochs = config.epochs if epochs is None else epochs
        self.sequential = bool(getattr(model.user, "sequential", False)) and model.max_history > 0
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
        )
        n_items = model.item.n_items
        counts = torch.bincount(train.items, minlength=n_items).double()
        self.log_q = torch.log((counts + 1.0) / (counts.sum() + n_items)).float().to(self.device)
        self.user_of = torch.repeat_interleave(torch.arange(train.n_users), train.lengths())
        # a basket tower reads (and, sequential, is trained on) one step per basket
        self.baskets: Baskets | None = train.baskets if model.basket and model.max_history > 0 else None
        self.basket_user = self.baskets.user_of() if self.baskets is not None else None
        self.state = TrainState()
        self.towers = Towers(self.model, self.sequential)
        self.forward: nn.Module = self.towers

    # examples -------------------------------------------------------------------------------------------------

    def examples(self) -> torch.Tensor:
        """Flat positions of the targets (per-interaction mode) or of the window ends (sequential mode; basket
        numbers with baskets)."""
        if not self.sequential:
            return torch.arange(self.train.items.shape[0])
        length = self.model.max_history
        ends: list[int] = []
        offsets = self.baskets.offsets if self.baskets is not None else self.train.offsets
        starts, stops = offsets[:-1].tolist(), offsets[1:].tolist()
        for start, stop in zip(starts, stops, strict=True):
            # windows end at the user's last item and step back by max_history; a window needs a target with
            # at least one item before it
            ends.extend(range(stop, start + 1, -length))
        return torch.tensor(sorted(ends), dtype=torch.long)

    def batch_size(self) -> int:
        if self.sequential:
            return max(1, self.config.batch_size // self.model.max_history)
        return self.config.batch_size

    # one step -------------------------------------------------------------------------------------------------

    def loss(self, positions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss of the batch of examples at ``positions`` (under torchrun: of the global batch)."""
        return self.objective(positions, generator)[0]

    def objective(self, positions: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, what to differentiate)`` of a batch; one and the same tensor in one process.

        Under torchrun ``positions`` is this rank's slice of the global batch, the loss is the global batch's and
        what is differentiated is scaled so that DistributedDataParallel's average over ranks of the gradients is
        the global batch's gradient (:meth:`distributed_objective`).
        """
        history, targets, users, keep, groups = self.examples_at(positions)
        n_targets = int(keep.sum()) if keep is not None else len(targets)
        n_items = self.model.item.n_items
        negatives = torch.randint(0, n_items, (n_targets,), generator=generator) if self.config.loss == "bpr" else None
        # only the items this batch touches go through the item tower (all of them for the full softmax)
        needed, local = None, None
        if self.config.loss != "softmax":
            parts = [history[history >= 0], targets[targets >= 0]] + ([negatives] if negatives is not None else [])
            needed = torch.unique(torch.cat(parts))
            local = torch.full((n_items,), -1, dtype=torch.long)
            local[needed] = torch.arange(len(needed))
            history = torch.where(history >= 0, local[history.clamp(min=0)], history)
        user_vectors, item_vectors = self.forward(
            needed.to(self.device) if needed is not None else None,
            history.to(self.device),
            users.to(self.device),
            keep.to(self.device) if keep is not None else None,
        )
        targets = (targets[keep] if keep is not None else targets).to(self.device)
        groups = groups.to(self.device) if groups is not None else None
        if self.ranks is not None:
            return self.distributed_objective(user_vectors, item_vectors, targets, local, negatives, groups)
        scale = self.scale()
        if self.config.loss == "softmax":
            value = F.cross_entropy(user_vectors @ item_vectors.T * scale, targets)
            return value, value
        assert local is not None
        rows = local.to(self.device)[targets]
        if self.config.loss == "sampled_softmax":
            logits = user_vectors @ item_vectors[rows].T * scale - self.log_q[targets].unsqueeze(0)
            logits = logits.masked_fill(not_negatives(targets, groups), float("-inf"))
            value = F.cross_entropy(logits, torch.arange(len(targets), device=self.device))
            return value, value
        assert negatives is not None
        positive = (user_vectors * item_vectors[rows]).sum(-1)
        negative = (user_vectors * item_vectors[local.to(self.device)[negatives.to(self.device)]]).sum(-1)
        value = -F.logsigmoid((positive - negative) * scale).mean()
        return value, value

    def examples_at(
        self, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(history, targets, users, keep, groups)`` of the examples at ``positions`` (see :meth:`examples`).

        ``history`` holds item ids ``(B, L)``, or baskets ``(B, L, width)``; ``targets`` the target ids, ``(B,)``
        per interaction, ``(B, L)`` or ``(B, L, width)`` in sequential mode, where ``keep`` selects the real ones.
        ``groups`` (baskets only) numbers the user vector each kept target is read from, the same across ranks.
        """
        length, baskets = self.model.max_history, self.baskets
        if not self.sequential:
            users = self.user_of[positions]
            if baskets is None:
                return self.train.window(users, positions, length), self.train.items[positions], users, None, None
            # the target's history ends at the basket before its own
            ends = baskets.of_position(positions)
            return baskets.window(users, ends, length, length), self.train.items[positions], users, None, ends
        # a position is a window's exclusive end, so its user is the one of the item (basket) before it
        if baskets is None:
            users = self.user_of[positions - 1]
            history = self.train.window(users, positions - 1, length)
            targets = self.train.window(users, positions, length)
            return history, targets, users, (targets >= 0) & (history >= 0), None
        assert self.basket_user is not None
        users = self.basket_user[positions - 1]
        history = baskets.window(users, positions - 1, length, length)
        targets = baskets.window(users, positions, length)  # every item of a basket is a target
        keep = (targets >= 0) & (history >= 0).any(dim=-1, keepdim=True)
        steps = positions.unsqueeze(1) * length + torch.arange(length).unsqueeze(0)
        return history, targets, users, keep, steps.unsqueeze(-1).expand_as(keep)[keep]

    def scale(self) -> float:
        return 1.0 / self.config.temperature if (self.config.normalize or self.config.loss != "bpr") else 1.0

    def distributed_objective(
        self,
        user_vectors: torch.Tensor,
        item_vectors: torch.Tensor,
        targets: torch.Tensor,
        local: torch.Tensor | None,
        negatives: torch.Tensor | None,
        groups: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of the global batch from this rank's slice, and what this rank differentiates.

        ``sampled_softmax``: the user vectors, target-item vectors and target ids of every rank are all-gathered,
        so every rank computes the loss of the whole global batch, each row against every target of the global
        batch (the same in-batch negatives and logQ correction as one process); this rank's own rows carry its
        gradient. ``softmax`` and ``bpr`` are per-row losses (full-catalogue logits, one negative): each rank sums
        its rows, divided by the global number of rows. Either way the result is multiplied by the number of ranks,
        since DistributedDataParallel averages the ranks' gradients.
        """
        assert self.ranks is not None
        world, scale = self.ranks.world, self.scale()
        if self.config.loss == "sampled_softmax":
            assert local is not None
            vectors = item_vectors[local.to(self.device)[targets]]
            users_all = distributed.gather_rows(user_vectors, self.ranks)
            items_all = distributed.gather_rows(vectors, self.ranks)
            targets_all = distributed.gather_rows(targets, self.ranks)
            logits = users_all @ items_all.T * scale - self.log_q[targets_all].unsqueeze(0)
            groups_all = distributed.gather_rows(groups, self.ranks) if groups is not None else None
            logits = logits.masked_fill(not_negatives(targets_all, groups_all), float("-inf"))
            value = F.cross_entropy(logits, torch.arange(len(targets_all), device=self.device))
            return value, value * world
        if self.config.loss == "softmax":
            rows = F.cross_entropy(user_vectors @ item_vectors.T * scale, targets, reduction="none")
        else:
            assert local is not None and negatives is not None
            to_local = local.to(self.device)
            positive = (user_vectors * item_vectors[to_local[targets]]).sum(-1)
            negative = (user_vectors * item_vectors[to_local[negatives.to(self.device)]]).sum(-1)
            rows = -F.logsigmoid((positive - negative) * scale)
        total, count = distributed.all_sum([float(rows.detach().sum()), float(rows.shape[0])], self.ranks)
        count = max(count, 1.0)
        differentiated = rows.sum() * (world / count)
        return torch.tensor(total / count), differentiated

    # epochs ---------------------------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the run's checkpoint if there is one; true when training continues from it.

        The manifest names the checkpoint (``checkpoint-<epoch>.pt``) and is updated only after that file is
        complete, so after a kill at any moment it names an intact checkpoint, whose checksum is verified here.
        """
        blob = self.load_checkpoint() if self.writes else None
        if self.ranks is not None:
            # rank 0 alone reads the run; the others get the checkpoint from it
            blob = self.ranks.broadcast(blob)
        if blob is None:
            return False
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.state = TrainState(**json.loads(blob["state"]))
        if self.writes:
            # the per-epoch log may be ahead of the checkpoint (killed after writing it): rewrite it from the state
            self.run.write_text(self.prefix + EPOCHS, "".join(json.dumps(r) + "\n" for r in self.state.log))
        return True

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint the run's manifest names (``None`` when there is none)."""
        name = self.run.stage(self.stage).get("checkpoint")
        if not name:
            return None
        blob: dict[str, Any] = torch.load(self.run.file(name), map_location=self.device, weights_only=True)
        return blob

    def fit(self, progress: Callable[[int], Progress | None] | None = None, until: int | None = None) -> TrainState:
        """Train until ``epochs`` or early stopping; the best epoch's weights end in the model (the last epoch's
        without ``validate``).

        Args:
            progress: called with the epoch number, returns a per-step progress callback (or ``None``).
            until: stop after this epoch even if training is not finished (``state.stopped`` stays empty and the
                model keeps the last epoch's weights); a later :meth:`resume` + :meth:`fit` continues.
        """
        examples = self.examples()
        if len(examples) == 0:
            raise ValueError("no training examples: every user has fewer than two training interactions")
        last = self.epochs if until is None else min(until, self.epochs)
        self.wrap()
        while self.state.epoch < last and not self.state.stopped:
            epoch = self.state.epoch + 1
            started = time.perf_counter()
            seed = self.config.seed * 1_000_003 + epoch
            generator = torch.Generator().manual_seed(seed)
            # every rank draws the same order; its own dropout masks and negatives
            draws = generator if self.ranks is None else torch.Generator().manual_seed(seed * 7919 + self.ranks.rank)
            torch.manual_seed(seed if self.ranks is None else seed * 7919 + self.ranks.rank)  # dropout masks
            order = examples[torch.randperm(len(examples), generator=generator)]
            bounds = self.batches(len(order))
            report = progress(epoch) if progress is not None and self.writes else None
            self.model.train()
            total = 0.0
            for step, (begin, end) in enumerate(bounds):
                positions = order[begin:end]
                if self.ranks is not None:
                    positions = distributed.my_slice(positions, self.ranks)
                loss, differentiated = self.objective(positions, draws)
                self.optimizer.zero_grad(set_to_none=True)
                differentiated.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                total += float(loss.detach())
                if report is not None:
                    report(step + 1, len(bounds), total / (step + 1))
            train_seconds = time.perf_counter() - started
            self.model.eval()
            if self.writes:
                record: dict[str, Any] = {"epoch": epoch, "loss": round(total / len(bounds), 6)}
                if self.validate is not None:
                    record["valid"] = self.validate(self.model)
                record["train_seconds"] = round(train_seconds, 3)
                record["seconds"] = round(time.perf_counter() - started, 3)
                self.end_epoch(record)
            if self.ranks is not None:
                # rank 0 validated and decided: every rank continues or stops with it
                self.state = TrainState(**self.ranks.broadcast(self.state.to_dict()))
        if self.state.stopped and self.validate is not None and self.writes:
            self.model.load_state_dict(self.best_weights())
        return self.state

    def batches(self, count: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of each batch of an epoch's ``count`` examples (global batches under torchrun)."""
        size = self.batch_size()
        if self.ranks is not None:
            return distributed.split_batches(count, size, self.ranks.world)
        return [(start, min(start + size, count)) for start in range(0, count, size)]

    def wrap(self) -> None:
        """Under torchrun, put the towers in DistributedDataParallel (once, after :meth:`resume`)."""
        if self.ranks is None or self.forward is not self.towers:
            return
        # the buffers are the items' cached features, the same on every rank: not synchronised at every step
        # (newer torch names this forward_sync_buffers and deprecates broadcast_buffers)
        names = inspect.signature(DistributedDataParallel.__init__).parameters
        no_sync: dict[str, Any] = (
            {"forward_sync_buffers": False} if "forward_sync_buffers" in names else {"broadcast_buffers": False}
        )
        self.forward = DistributedDataParallel(
            self.towers, device_ids=[self.device] if self.device.type == "cuda" else None, **no_sync
        )

    def end_epoch(self, record: dict[str, Any]) -> None:
        state = self.state
        previous_best = state.best_epoch
        state.epoch = record["epoch"]
        state.log.append(record)
        if "valid" in record:
            value = record["valid"].get(SELECT, float("nan"))
            if not state.best or value > state.best.get(SELECT, float("-inf")):
                state.best, state.best_epoch, state.bad_epochs = dict(record["valid"]), state.epoch, 0
                weights = self.model.state_dict()
                self.run.write(self.prefix + BEST.format(epoch=state.epoch), lambda handle: torch.save(weights, handle))
            else:
                state.bad_epochs += 1
                if state.bad_epochs >= self.config.patience:
                    state.stopped = f"no better validation {SELECT} for {state.bad_epochs} epochs"
        if state.epoch >= self.epochs and not state.stopped:
            state.stopped = f"reached epochs: {self.epochs}"
        self.run.write_text(self.prefix + EPOCHS, "".join(json.dumps(r) + "\n" for r in state.log))
        blob = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": json.dumps(state.to_dict()),
        }
        old = self.run.stage(self.stage).get("checkpoint")
        name = self.prefix + CHECKPOINT.format(epoch=state.epoch)
        self.run.write(name, lambda handle: torch.save(blob, handle))
        self.run.mark(self.stage, "running", checkpoint=name)  # from here on, a resume starts after this epoch
        for stale in ([old] if old and old != name else []) + (
            [self.prefix + BEST.format(epoch=previous_best)]
            if previous_best and previous_best != state.best_epoch
            else []
        ):
            (self.run.path / stale).unlink(missing_ok=True)
            self.run.forget(stale)
        if self.epoch_done is not None:
            self.epoch_done(record)

    def best_weights(self) -> dict[str, torch.Tensor]:
        data = self.run.file(self.prefix + BEST.format(epoch=self.state.best_epoch)).read_bytes()
        state: dict[str, torch.Tensor] = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)
        return state
