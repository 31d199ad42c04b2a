"""The two-tower training loop: next-item prediction from the history before each training interaction.

Every training interaction is a target; the user tower reads the user's items before it (at most
``max_history``), so training matches prediction, where the tower reads everything known. Sequential towers
(``encode_sequence``) are trained SASRec-style instead: each user's sequence is cut into windows, and every position
of a window predicts the next item in one pass.

Losses: ``sampled_softmax`` (the batch's other targets are the negatives, minus log of their training frequency:
the logQ correction of Yi et al. 2019), ``softmax`` (the whole catalogue) and ``bpr`` (one uniform negative).
AdamW; early stopping on validation Recall@20; a checkpoint after every epoch, so ``--resume`` continues a killed
run. Randomness is re-seeded from ``(seed, epoch)`` at the start of each epoch, so a resumed run draws the same
batches, negatives and dropout masks as an uninterrupted one and ends with the same metrics.

A :class:`Trainer` without ``validate`` trains a fixed number of epochs and keeps the last one's weights: that is
the refit stage (``train.refit``: the selected number of epochs again, from scratch, on train + valid). Each stage
has its own manifest entry and file names (``refit-checkpoint-<epoch>.pt``, ``refit-epochs.jsonl``), so the two
never collide and either resumes after a kill.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from fusionrec.core.assembly.config import TrainConfig
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.two_tower import Histories, TwoTower

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
    ) -> None:
        self.device = device_of(config)
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
        self.state = TrainState()

    # examples -------------------------------------------------------------------------------------------------

    def examples(self) -> torch.Tensor:
        """Flat positions of the targets (per-interaction mode) or of the window ends (sequential mode)."""
        if not self.sequential:
            return torch.arange(self.train.items.shape[0])
        length = self.model.max_history
        ends: list[int] = []
        starts, stops = self.train.offsets[:-1].tolist(), self.train.offsets[1:].tolist()
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
        # in sequential mode a position is a window's exclusive end, so its user is the one of the item before it
        users = self.user_of[positions - 1 if self.sequential else positions]
        length = self.model.max_history
        if self.sequential:
            history = self.train.window(users, positions - 1, length)
            targets = self.train.window(users, positions, length)
            keep = (targets >= 0) & (history >= 0)
        else:
            history = self.train.window(users, positions, length)
            targets = self.train.items[positions]
        n_targets = int(keep.sum()) if self.sequential else len(targets)
        n_items = self.model.item.n_items
        negatives = torch.randint(0, n_items, (n_targets,), generator=generator) if self.config.loss == "bpr" else None
        # only the items this batch touches go through the item tower (all of them for the full softmax)
        needed = None
        if self.config.loss != "softmax":
            parts = [history[history >= 0], targets[targets >= 0]] + ([negatives] if negatives is not None else [])
            needed = torch.unique(torch.cat(parts))
            local = torch.full((n_items,), -1, dtype=torch.long)
            local[needed] = torch.arange(len(needed))
            history = torch.where(history >= 0, local[history.clamp(min=0)], history)
        item_vectors, _ = self.model.item_vectors(needed.to(self.device) if needed is not None else None)
        history, users = history.to(self.device), users.to(self.device)
        if self.sequential:
            outputs = self.model.user_sequence(item_vectors, history, users)
            user_vectors, targets = outputs[keep.to(self.device)], targets[keep]
        else:
            user_vectors = self.model.user_vectors(item_vectors, history, users)
        targets = targets.to(self.device)
        scale = 1.0 / self.config.temperature if (self.config.normalize or self.config.loss != "bpr") else 1.0
        if self.config.loss == "softmax":
            return F.cross_entropy(user_vectors @ item_vectors.T * scale, targets)
        assert needed is not None
        rows = local.to(self.device)[targets]
        if self.config.loss == "sampled_softmax":
            logits = user_vectors @ item_vectors[rows].T * scale - self.log_q[targets].unsqueeze(0)
            same = targets.unsqueeze(0) == targets.unsqueeze(1)
            same.fill_diagonal_(False)  # another copy of the target is not a negative
            logits = logits.masked_fill(same, float("-inf"))
            return F.cross_entropy(logits, torch.arange(len(targets), device=self.device))
        assert negatives is not None
        positive = (user_vectors * item_vectors[rows]).sum(-1)
        negative = (user_vectors * item_vectors[local.to(self.device)[negatives.to(self.device)]]).sum(-1)
        return -F.logsigmoid((positive - negative) * scale).mean()

    # epochs ---------------------------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the run's checkpoint if there is one; true when training continues from it.

        The manifest names the checkpoint (``checkpoint-<epoch>.pt``) and is updated only after that file is
        complete, so after a kill at any moment it names an intact checkpoint, whose checksum is verified here.
        """
        name = self.run.stage(self.stage).get("checkpoint")
        if not name:
            return False
        blob = torch.load(self.run.file(name), map_location=self.device, weights_only=True)
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.state = TrainState(**json.loads(blob["state"]))
        # the per-epoch log may be ahead of the checkpoint (killed after writing it): rewrite it from the state
        self.run.write_text(self.prefix + EPOCHS, "".join(json.dumps(r) + "\n" for r in self.state.log))
        return True

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
        while self.state.epoch < last and not self.state.stopped:
            epoch = self.state.epoch + 1
            started = time.perf_counter()
            seed = self.config.seed * 1_000_003 + epoch
            torch.manual_seed(seed)  # dropout masks
            generator = torch.Generator().manual_seed(seed)
            order = examples[torch.randperm(len(examples), generator=generator)]
            size = self.batch_size()
            steps = math.ceil(len(order) / size)
            report = progress(epoch) if progress is not None else None
            self.model.train()
            total = 0.0
            for step in range(steps):
                loss = self.loss(order[step * size : (step + 1) * size], generator)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                total += float(loss.detach())
                if report is not None:
                    report(step + 1, steps, total / (step + 1))
            train_seconds = time.perf_counter() - started
            self.model.eval()
            record: dict[str, Any] = {"epoch": epoch, "loss": round(total / steps, 6)}
            if self.validate is not None:
                record["valid"] = self.validate(self.model)
            record["train_seconds"] = round(train_seconds, 3)
            record["seconds"] = round(time.perf_counter() - started, 3)
            self.end_epoch(record)
        if self.state.stopped and self.validate is not None:
            self.model.load_state_dict(self.best_weights())
        return self.state

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
