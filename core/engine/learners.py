"""What the ``train`` stage trains: the two-tower model, or a pipeline's ``model`` section (a baseline).

Both are a :class:`Learner`: ``train`` fits on the split (with ``train.refit``, retrains on train + valid), writes
the run's artifacts and returns a :class:`Trained`; ``load`` rebuilds the same :class:`Trained` from those artifacts
in a later process. The stages after ``train`` see only :class:`Trained`, never which kind it was.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fusionrec.core.assembly.config import PipelineSpec
from fusionrec.core.engine import refit as refitting
from fusionrec.core.engine.context import Prepared, RunContext
from fusionrec.core.engine.evaluation import evaluate, known_interactions
from fusionrec.core.engine.rundir import RunDir, RunError
from fusionrec.core.engine.trainer import Trainer, device_of
from fusionrec.core.engine.two_tower import Histories, ItemTower, TwoTower, TwoTowerScorer, describe
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.registry import Registry
from fusionrec.registry.persist import load_module, save_module

SELECTION = ("recall@20", "ndcg@20")
ITEM_VECTORS = "item_vectors.npy"
ITEM_WEIGHTS = "item_weights.npy"
USER_TOWER = "user_tower"
MODEL = "model"
ENCODERS = "encoders"
"""Folder of the trained encoders (``encoders/<key>``), one per trainable encoder trained end to end."""
SELECTION_MODEL = "selection"
"""With ``train.refit``: the train-only model validation chose (``selection/``), which scores validation."""


@dataclass
class Trained:
    """A trained model as the stages after ``train`` use it.

    Attributes:
        scorer: the two-tower's user tower and item vectors (``None`` for a baseline).
        model: the baseline model (``None`` for a two-tower).
        item_weights: ``(n_items, n_modalities)`` per-modality weights of the fused item vectors.
        modalities: the modality keys, in the weights' column order.
        selection: with ``train.refit``, the train-only model that scores validation (same kind, no refit).
        summary: the train stage's summary (epochs, parameters, refit …).
    """

    scorer: TwoTowerScorer | None = None
    model: Model | None = None
    item_weights: torch.Tensor | None = None
    modalities: list[str] = field(default_factory=list)
    selection: Trained | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Learner(ABC):
    """How a pipeline's model is trained, saved and loaded back."""

    artifacts: tuple[str, ...] = ()
    """What ``train`` records in the run (files or folders), so the stage counts as done only when they verify."""

    @abstractmethod
    def train(self, ctx: RunContext) -> Trained | None:
        """Train on ``ctx``'s split and save into ``ctx.run``; ``None`` when stopped early (``ctx.stop_after``)."""

    @abstractmethod
    def load(self, ctx: RunContext) -> Trained:
        """The :class:`Trained` a finished ``train`` left in ``ctx.run``."""


def learner_for(spec: PipelineSpec) -> Learner:
    return BaselineLearner() if spec.model is not None else TwoTowerLearner()


def validation_scores(ctx: RunContext) -> Callable[[Any], dict[str, float]]:
    """Validation Recall@20 and NDCG@20 of a score function (early stopping and model selection)."""
    prepared = ctx.need_prepared()

    def measure(score: Any) -> dict[str, float]:
        return evaluate(
            score, prepared.split, "valid", list(SELECTION), prepared.n_items, registry=ctx.registry
        ).metrics

    return measure


# the baselines -------------------------------------------------------------------------------------------------------


class BaselineLearner(Learner):
    """A ``model`` section: a whole recommender plugin (popularity, itemknn, bpr_mf, lightgcn, vbpr …)."""

    artifacts = (MODEL,)

    def _build(self, ctx: RunContext) -> Model:
        assert ctx.spec.model is not None
        model = ctx.registry.build(ctx.spec.model)
        if not isinstance(model, Model):
            raise FusionrecError(f"model '{ctx.spec.model.type}' built a {type(model).__name__}, not a fusionrec Model")
        return model

    def train(self, ctx: RunContext) -> Trained | None:
        spec, prepared, run = ctx.spec, ctx.need_prepared(), ctx.run
        model = self._build(ctx)
        if spec.train.refit:
            refitting.check_model(model, spec)
        records: list[dict[str, Any]] = []
        context = FitContext(
            train=prepared.split.train,
            n_users=prepared.n_users,
            n_items=prepared.n_items,
            features=prepared.features,
            validate=validation_scores(ctx),
            seed=spec.train.seed,
            device=str(device_of(spec.train)),
            progress=ctx.progress,
            log=records.append,
        )
        summary = dict(model.fit(context))
        served, selection = model, None
        if spec.train.refit:
            served, summary["refit"] = refitting.refit_model(
                spec, ctx.registry, context, summary, known_interactions(prepared.split, "test"), run
            )
            model.save(run.path / SELECTION_MODEL)
            run.record(SELECTION_MODEL)
            selection = Trained(model=model)
        served.save(run.path / MODEL)
        run.record(MODEL)
        run.write_text("epochs.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in records))
        return Trained(model=served, selection=selection, summary=summary)

    def load(self, ctx: RunContext) -> Trained:
        kind = type(self._build(ctx))
        check_folder(ctx.run, MODEL)
        selection = None
        if ctx.spec.train.refit:
            check_folder(ctx.run, SELECTION_MODEL)
            selection = Trained(model=kind.load(ctx.run.path / SELECTION_MODEL))
        return Trained(model=kind.load(ctx.run.path / MODEL), selection=selection, summary=train_summary(ctx.run))


# the two-tower -------------------------------------------------------------------------------------------------------


class TwoTowerLearner(Learner):
    """The pipeline's ``fuser`` + ``user`` sections (and ``train.item_ids``), trained by :class:`Trainer`."""

    artifacts = (ITEM_VECTORS, ITEM_WEIGHTS, USER_TOWER)

    def train(self, ctx: RunContext) -> Trained | None:
        if ctx.ranks is not None and not ctx.ranks.main:
            self.follow(ctx)
            return None
        spec, prepared, run = ctx.spec, ctx.need_prepared(), ctx.run
        train_history = Histories.from_frame(prepared.split.train, prepared.n_users)
        measure = validation_scores(ctx)

        def validate(m: TwoTower) -> dict[str, float]:
            with torch.no_grad():
                vectors = m.item_vectors()[0]
            scorer = TwoTowerScorer(m.user, vectors, m.normalize, prepared.n_users)
            return measure(lambda users: scorer.score(users, train_history).cpu())

        trainer = Trainer(
            build_two_tower(spec, prepared, ctx.registry),
            train_history,
            spec.train,
            run,
            validate,
            ranks=ctx.ranks,
            epoch_done=lambda record: ctx.tell("epoch", record=record),  # `fusionrec tune` prunes on it
        )
        trainer.resume()
        first = trainer.state.epoch
        until = trainer.state.epoch + ctx.stop_after if ctx.stop_after is not None else None
        with epoch_bars(ctx) as bars:
            state = trainer.fit(bars, until=until)
        if not state.stopped:
            run.mark("train", "interrupted", epoch=state.epoch)
            return None
        net = trainer.model.cpu().eval()
        final, selection, refit_summary = net, None, None
        if spec.train.refit:
            test_history = Histories.from_frame(known_interactions(prepared.split, "test"), prepared.n_users)
            budget = ctx.stop_after - (state.epoch - first) if ctx.stop_after is not None else None
            with epoch_bars(ctx, "refit epoch") as bars:
                refitted = refitting.refit_two_tower(
                    lambda: build_two_tower(spec, prepared, ctx.registry),
                    spec,
                    test_history,
                    run,
                    state.best_epoch,
                    bars,
                    budget,
                    ranks=ctx.ranks,
                )
            if refitted is None:
                run.mark("train", "interrupted", epoch=state.epoch)
                return None
            final, refit_summary = refitted
            selection = self._save(net, run, SELECTION_MODEL + "/", prepared.n_users)
        trained = self._save(final, run, "", prepared.n_users)
        summary = {**state.to_dict(), **describe(final), "modalities": list(final.item.modalities)}
        saved = save_encoders(final, run)
        if saved:
            summary["encoders"] = saved
        summary.pop("log", None)
        if refit_summary is not None:
            summary["refit"] = refit_summary
        trained.selection, trained.summary = selection, summary
        return trained

    @staticmethod
    def follow(ctx: RunContext) -> None:
        """A rank other than 0 under torchrun: train (and refit) beside rank 0, which validates, decides when to stop
        and writes everything; this rank writes nothing."""
        spec, prepared, ranks = ctx.spec, ctx.need_prepared(), ctx.ranks

        def build() -> TwoTower:
            return build_two_tower(spec, prepared, ctx.registry)

        history = Histories.from_frame(prepared.split.train, prepared.n_users)
        trainer = Trainer(build(), history, spec.train, ctx.run, None, ranks=ranks)
        trainer.resume()
        first = trainer.state.epoch
        state = trainer.fit(until=trainer.state.epoch + ctx.stop_after if ctx.stop_after is not None else None)
        if not state.stopped or not spec.train.refit:
            return
        test_history = Histories.from_frame(known_interactions(prepared.split, "test"), prepared.n_users)
        budget = ctx.stop_after - (state.epoch - first) if ctx.stop_after is not None else None
        refitting.refit_two_tower(build, spec, test_history, ctx.run, state.best_epoch, None, budget, ranks=ranks)

    @staticmethod
    def _save(net: TwoTower, run: RunDir, prefix: str, n_users: int) -> Trained:
        with torch.no_grad():
            vectors, weights = net.item_vectors()
        run.write(prefix + ITEM_VECTORS, lambda handle: np.save(handle, vectors.numpy().astype(np.float32)))
        run.write(prefix + ITEM_WEIGHTS, lambda handle: np.save(handle, weights.numpy().astype(np.float32)))
        save_module(net.user, run.path / prefix / USER_TOWER)
        run.record(prefix + USER_TOWER)
        scorer = TwoTowerScorer(net.user, vectors, net.normalize, n_users)
        return Trained(scorer=scorer, item_weights=weights, modalities=list(net.item.modalities))

    def load(self, ctx: RunContext) -> Trained:
        summary = train_summary(ctx.run)
        trained = self._load(ctx, "", summary.get("modalities", []))
        if ctx.spec.train.refit:
            trained.selection = self._load(ctx, SELECTION_MODEL + "/", trained.modalities)
        trained.summary = summary
        return trained

    @staticmethod
    def _load(ctx: RunContext, prefix: str, modalities: list[str]) -> Trained:
        run = ctx.run
        check_folder(run, prefix + USER_TOWER)
        tower = load_module(run.path / prefix / USER_TOWER, ctx.registry)
        vectors = torch.from_numpy(np.load(run.file(prefix + ITEM_VECTORS)))
        weights = torch.from_numpy(np.load(run.file(prefix + ITEM_WEIGHTS)))
        n_users = ctx.need_loaded().data.n_users
        scorer = TwoTowerScorer(tower, vectors, ctx.spec.train.normalize, n_users)
        return Trained(scorer=scorer, item_weights=weights, modalities=list(modalities))


def build_two_tower(spec: PipelineSpec, prepared: Prepared, registry: Registry) -> TwoTower:
    """The two-tower model of ``spec``'s ``fuser``, ``user`` and ``train`` sections."""
    file = spec.file
    if spec.user is None:
        raise ConfigError.at(
            ("user",),
            "the pipeline has no `user` section: the two-tower model needs a user tower, e.g. "
            "`user: {type: transformer}` (or a `model:` section for a baseline; `fusionrec plugins` lists both).",
            file=file,
        )
    features = prepared.modalities
    torch.manual_seed(spec.train.seed)
    fuser = None
    if spec.fuser is not None:
        dims = {key: int(v[0].shape[1]) if isinstance(v, tuple) else v.encoder.dim for key, v in features.items()}
        fuser = registry.build(spec.fuser, input_dims=dims)
    # each model trains its own copy of a trainable encoder, from the initial weights prepare() seeded
    own = {key: v if isinstance(v, tuple) else v.for_model() for key, v in features.items()}
    item = ItemTower(own, fuser, prepared.n_items, spec.train.dim, spec.train.item_ids)
    tower = registry.build(spec.user, item_dim=item.dim, n_users=prepared.n_users)
    if getattr(tower, "out_dim", item.dim) != item.dim:
        raise FusionrecError(
            f"user tower '{spec.user.type}' gives vectors of size {tower.out_dim}, but the item vectors have size "
            f"{item.dim}; a user tower's out_dim must equal its item_dim"
        )
    return TwoTower(item, tower, spec.train.normalize)


def save_encoders(net: TwoTower, run: RunDir) -> dict[str, str]:
    """Save the encoders the item tower trained end to end into ``encoders/<key>`` (recorded in the manifest), so
    the run keeps what they learned; returns ``{key: folder}``."""
    saved = {}
    for i, inputs in net.item.inputs.items():
        key = net.item.modalities[i]
        inputs.encoder.save(run.path / ENCODERS / key)
        run.record(f"{ENCODERS}/{key}")
        saved[key] = f"{ENCODERS}/{key}"
    return saved


def train_summary(run: RunDir) -> dict[str, Any]:
    summary: dict[str, Any] = run.stage("train").get("summary", {})
    return summary


def check_folder(run: RunDir, name: str) -> None:
    """Check every recorded file under ``name`` against the manifest."""
    prefix = name.rstrip("/") + "/"
    files = [rel for rel in run.manifest["artifacts"] if rel.startswith(prefix) or rel == name]
    if not files:
        raise RunError(f"{run.path / name}: missing from the run (nothing recorded in the manifest)")
    for rel in files:
        run.file(rel)


@contextmanager
def epoch_bars(ctx: RunContext, label: str = "epoch") -> Iterator[Any]:
    """A per-epoch progress bar factory (loss so far), or ``None`` when quiet."""
    if not ctx.progress:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps · loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=ctx.console,
        transient=False,
    ) as bars:

        def epoch_bar(epoch: int) -> Callable[[int, int, float], None]:
            task = bars.add_task(f"{label} {epoch}", total=None, loss=float("nan"))

            def advance(step: int, steps: int, loss: float) -> None:
                bars.update(task, completed=step, total=steps, loss=loss)

            return advance

        yield epoch_bar
