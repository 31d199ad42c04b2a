"""``fusionrec train``: data → features → model → validation-selected weights → metrics, in a run directory.

The two-tower model (``fuser`` + ``user``) is trained by :mod:`fusionrec.core.engine.trainer`; a pipeline with a
``model`` section trains that model instead (the baselines). Either way the result is scored by the same code
(:mod:`fusionrec.core.engine.evaluation`) on the same split: validation with the training history and training items
masked, test with the training and validation history and items masked. With ``train.refit``, test is scored
(and the run's model saved) from a model retrained on train + valid for the epochs validation chose
(:mod:`fusionrec.core.engine.refit`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fusionrec.core.assembly import loading
from fusionrec.core.assembly.config import EvaluateConfig, PipelineSpec, dumps_pipeline, parse_pipeline
from fusionrec.core.data import SplitData
from fusionrec.core.engine import refit as refitting
from fusionrec.core.engine.evaluation import Part
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.trainer import Trainer, device_of
from fusionrec.core.engine.two_tower import (
    Features,
    Histories,
    ItemTower,
    Modalities,
    TwoTower,
    TwoTowerScorer,
    describe,
)
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.registry import Registry
from fusionrec.registry.persist import save_module

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
SELECTION = ("recall@20", "ndcg@20")
ITEM_VECTORS = "item_vectors.npy"
ITEM_WEIGHTS = "item_weights.npy"
USER_TOWER = "user_tower"
MODEL = "model"
METRICS = "metrics.json"
INDEX = "index"
PARTS: tuple[Part, Part] = ("valid", "test")
RANKER = "ranker"
ENCODERS = "encoders"
"""Folder of the trained encoders (``encoders/<key>``), one per trainable encoder trained end to end."""


@dataclass
class Prepared:
    """A pipeline's data, split and features, ready to train on.

    Attributes:
        features: fixed vectors by modality: frozen encoders' (and, for a `model` section, every encoder's).
        inputs: trainable encoders with every item's preprocessed input
            (:class:`~fusionrec.core.engine.encoder_inputs.EncoderInputs`), trained end to end by the two-tower engine.
    """

    loaded: loading.Loaded
    split: SplitData
    features: Features
    feature_seconds: float
    features_run: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> Modalities:
        """Every modality the item tower reads, in the pipeline's ``encoders`` order."""
        both: dict[str, Any] = {**self.features, **self.inputs}
        return {key: both[key] for key in self.loaded.spec.encoders if key in both}

    @property
    def n_users(self) -> int:
        return self.loaded.data.n_users

    @property
    def n_items(self) -> int:
        return self.loaded.data.n_items


def prepare(pipeline: Path, registry: Registry, *, progress: bool, console: Console | None) -> Prepared:
    """Load and split the data and compute (or read from the cache) the encoders' features."""
    from fusionrec.core.engine import encoder_inputs as ei
    from fusionrec.core.engine import features as fe

    loaded = loading.load(pipeline, registry)
    split = loading.run_split(loaded)
    features: dict[str, Any] = {}
    seconds = 0.0
    computed = None
    if loaded.spec.encoders:
        if loaded.spec.model is None:
            # frozen encoders are read from the feature cache; trainable ones (cnn, rnn) are fitted and every item's
            # input preprocessed once here, and the item tower trains them end to end with the towers
            computed = ei.training_features(loaded, registry, progress=progress, console=console)
        else:
            # a `model` section (a baseline) takes fixed vectors: trainable encoders are encoded once with their
            # fitted, untrained weights
            computed = fe.pipeline_features(loaded, registry, progress=progress, console=console, trainable="encode")
        seconds = computed.seconds
        features = {key: (m.vectors, m.present) for key, m in computed.matrices.items()}
    return Prepared(loaded, split, features, seconds, computed, dict(computed.inputs) if computed else {})


def metric_names(spec: PipelineSpec) -> list[str]:
    names = list(spec.evaluate.metrics) if spec.evaluate is not None else list(DEFAULT_METRICS)
    return names + [m for m in SELECTION if m not in names]


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
    if features and spec.fuser is None:
        raise ConfigError.at(
            ("fuser",),
            f"the pipeline has encoders ({', '.join(features)}) but no `fuser` section to combine their vectors; add "
            "one, e.g. `fuser: {type: attention, dim: 64}` (`fuser: {type: mean, dim: 64}` for one modality).",
            file=file,
        )
    if spec.fuser is not None and not features:
        raise ConfigError.at(
            ("fuser",),
            "the pipeline has a fuser but no encoders, so there is nothing to fuse; add an `encoders` section, or "
            "remove `fuser` to train on item ids only.",
            file=file,
        )
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


@dataclass
class TrainOutcome:
    """What ``fusionrec train`` did."""

    run: RunDir
    summary: dict[str, Any]
    metrics: dict[str, Any]
    resumed: bool


def train_pipeline(
    pipeline: Path,
    out: Path,
    registry: Registry,
    *,
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
    stop_after: int | None = None,
    on_prepared: Callable[[Prepared], None] | None = None,
) -> TrainOutcome:
    """Train ``pipeline`` into the run directory ``out`` (continuing the run there with ``resume``).

    Args:
        stop_after: stop after this many epochs in this call, the training and refit stages' together (tests
            simulate an interrupted run with it).
        on_prepared: called once the data is loaded and split and the features computed (``fusionrec run``
            prints them).
    """
    from fusionrec.core.engine.evaluation import evaluate, known_interactions

    prepared = prepare(pipeline, registry, progress=progress, console=console)
    if on_prepared is not None:
        on_prepared(prepared)
    spec = prepared.loaded.spec

    def resolve(saved: str) -> str:  # a run's config.yaml as this version resolves it (new settings' defaults)
        return dumps_pipeline(parse_pipeline(saved, base_dir=Path(out), registry=registry))

    run = RunDir.create(
        out, dumps_pipeline(spec), pipeline=pipeline, seed=spec.train.seed, resume=resume, resolve=resolve
    )
    resumed = resume and bool(run.manifest["stages"])
    if run.done("train"):
        return TrainOutcome(run, run.stage("train").get("summary", {}), run.read_json(METRICS), resumed)
    names = metric_names(spec)
    protocol = {
        "dataset": spec.data.type if spec.data is not None else None,
        "split": loading.split_name(prepared.loaded),
    }
    split = prepared.split
    started = time.perf_counter()
    run.mark("train", "running", features_seconds=round(prepared.feature_seconds, 3))
    train_history = Histories.from_frame(split.train, prepared.n_users)

    def validate_scores(score: Callable[[Any], torch.Tensor]) -> dict[str, float]:
        return evaluate(score, split, "valid", list(SELECTION), prepared.n_items, registry=registry).metrics

    if spec.model is not None:
        model = registry.build(spec.model)
        if not isinstance(model, Model):
            raise FusionrecError(f"model '{spec.model.type}' built a {type(model).__name__}, not a fusionrec Model")
        if spec.train.refit:
            refitting.check_model(model, spec)
        records: list[dict[str, Any]] = []
        context = FitContext(
            train=split.train,
            n_users=prepared.n_users,
            n_items=prepared.n_items,
            features=prepared.features,
            validate=validate_scores,
            seed=spec.train.seed,
            device=str(device_of(spec.train)),
            progress=progress,
            log=records.append,
        )
        summary = dict(model.fit(context))
        served = model  # what scores test and is saved: the refit when train.refit
        if spec.train.refit:
            served, summary["refit"] = refitting.refit_model(
                spec, registry, context, summary, known_interactions(split, "test"), run
            )
        served.save(run.path / MODEL)
        run.record(MODEL)
        run.write_text("epochs.jsonl", "".join(_json_line(r) for r in records))

        def score_with(fitted: Model, history: Any) -> Callable[[Any], torch.Tensor]:
            return lambda users: fitted.score(users, history)

        scorers = {
            "valid": score_with(model, known_interactions(split, "valid")),
            "test": score_with(served, known_interactions(split, "test")),
        }
    else:
        net = build_two_tower(spec, prepared, registry)

        def validate(m: TwoTower) -> dict[str, float]:
            with torch.no_grad():
                vectors = m.item_vectors()[0]
            scorer = TwoTowerScorer(m.user, vectors, m.normalize, prepared.n_users)
            return validate_scores(lambda users: scorer.score(users, train_history).cpu())

        trainer = Trainer(net, train_history, spec.train, run, validate)
        trainer.resume()
        first = trainer.state.epoch
        until = trainer.state.epoch + stop_after if stop_after is not None else None
        with _epoch_bars(progress, console) as bars:
            state = trainer.fit(bars, until=until)
        if not state.stopped:
            run.mark("train", "interrupted", epoch=state.epoch)
            return TrainOutcome(run, state.to_dict(), {}, resumed)
        net = trainer.model.cpu().eval()
        test_history = Histories.from_frame(known_interactions(split, "test"), prepared.n_users)
        final, refit_summary = net, None  # what scores test and is saved: the refit when train.refit
        if spec.train.refit:
            budget = stop_after - (state.epoch - first) if stop_after is not None else None
            with _epoch_bars(progress, console, "refit epoch") as bars:
                refitted = refitting.refit_two_tower(
                    lambda: build_two_tower(spec, prepared, registry),
                    spec,
                    test_history,
                    run,
                    state.best_epoch,
                    bars,
                    budget,
                )
            if refitted is None:
                run.mark("train", "interrupted", epoch=state.epoch)
                return TrainOutcome(run, state.to_dict(), {}, resumed)
            final, refit_summary = refitted
        with torch.no_grad():
            vectors, weights = final.item_vectors()
        run.write(ITEM_VECTORS, lambda handle: np.save(handle, vectors.numpy().astype(np.float32)))
        run.write(ITEM_WEIGHTS, lambda handle: np.save(handle, weights.numpy().astype(np.float32)))
        save_module(final.user, run.path / USER_TOWER)
        run.record(USER_TOWER)
        trained = save_encoders(final, run)
        summary = {**state.to_dict(), **describe(final), "modalities": list(final.item.modalities)}
        if trained:
            summary["encoders"] = trained
        summary.pop("log", None)
        scorer = TwoTowerScorer(final.user, vectors, final.normalize, prepared.n_users)
        valid_scorer = scorer
        if refit_summary is not None:
            summary["refit"] = refit_summary
            with torch.no_grad():
                valid_scorer = TwoTowerScorer(net.user, net.item_vectors()[0], net.normalize, prepared.n_users)
        scorers = {
            "valid": lambda users: valid_scorer.score(users, train_history),
            "test": lambda users: scorer.score(users, test_history),
        }
    evaluate_config = spec.evaluate if spec.evaluate is not None else EvaluateConfig()
    protocols: dict[str, dict[str, Any]] = {part: protocol for part in PARTS}
    if spec.train.refit:
        protocols = refitting.protocols(protocol, summary["refit"]["epochs"])
    results: dict[str, Any] = {
        part: evaluate(
            scorers[part],
            split,
            part,
            names,
            prepared.n_items,
            registry=registry,
            bootstrap=evaluate_config.bootstrap,
            seed=spec.train.seed,
            protocol=protocols[part],
        ).to_dict()
        for part in PARTS
    }
    if spec.model is None:
        if spec.retriever is not None:
            summary["index"] = build_index(spec, run, registry, vectors)
        if spec.ranker is not None:
            results["rerank"] = rerank_stage(
                spec, run, registry, prepared, scorer, weights, names, protocol, evaluate_config
            )
    for part in results.values():
        part.pop("per_user", None)
    run.write_json(METRICS, results)
    run.mark("train", "done", seconds=round(time.perf_counter() - started, 3), summary=summary)
    return TrainOutcome(run, summary, results, resumed)


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


def build_index(spec: PipelineSpec, run: RunDir, registry: Registry, vectors: torch.Tensor) -> dict[str, Any]:
    """The index stage: the retriever over the final item vectors (ids = internal item ids), saved in the run."""
    assert spec.retriever is not None
    started = time.perf_counter()
    retriever = registry.build(spec.retriever)
    retriever.build(vectors.numpy().astype(np.float32), np.arange(vectors.shape[0], dtype=np.int64))
    retriever.save(run.path / INDEX)
    run.record(INDEX)
    return {"type": spec.retriever.type, "items": len(retriever), "seconds": round(time.perf_counter() - started, 3)}


def rerank_stage(
    spec: PipelineSpec,
    run: RunDir,
    registry: Registry,
    prepared: Prepared,
    scorer: TwoTowerScorer,
    weights: torch.Tensor,
    names: list[str],
    protocol: dict[str, Any],
    config: EvaluateConfig,
) -> dict[str, Any]:
    """Fit the ranker on half the validation users; compare validation metrics before and after on the other
    half; score test with the reranker. See :mod:`fusionrec.core.engine.two_stage`."""
    from fusionrec.core.engine.evaluation import evaluate, known_interactions
    from fusionrec.core.engine.two_stage import TwoStage, fit_ranker, halves

    assert spec.ranker is not None
    split, seed = prepared.split, spec.train.seed
    ranker = registry.build(spec.ranker)
    fit_users, report_users = halves(split.valid["user"].unique().astype(np.int64), seed)
    stage = TwoStage(scorer, weights, ranker, config.candidates)
    fitted = fit_ranker(ranker, stage, split, prepared.n_users, fit_users)
    ranker.save(run.path / RANKER)
    run.record(RANKER)
    plain = TwoStage(scorer, weights, None, config.candidates)
    out: dict[str, Any] = {
        "fit": fitted,
        "protocol": "ranker fitted on half of the validation users, "
        "validation before/after measured on the other half; test scored with that ranker",
    }

    def measure(two: TwoStage, part: Part, users: Any) -> dict[str, Any]:
        known = known_interactions(split, part)
        histories = Histories.from_frame(known, prepared.n_users)
        return evaluate(
            two.score_fn(histories, known),
            split,
            part,
            names,
            prepared.n_items,  # type: ignore[arg-type]
            registry=registry,
            bootstrap=config.bootstrap,
            seed=seed,
            users=users,
            protocol={**protocol, "candidates_reranked": config.candidates},
        ).to_dict()

    before = measure(plain, "valid", report_users)
    after = measure(stage, "valid", report_users)
    for block in (before, after):
        block.pop("per_user", None)
    gain = after["metrics"]["ndcg@20"] - before["metrics"]["ndcg@20"]
    out["valid_before"], out["valid_after"] = before, after
    out["verdict"] = (
        f"reranking {'helped' if gain > 0 else 'did not help'}: validation NDCG@20 {before['metrics']['ndcg@20']:.4f} "
        f"→ {after['metrics']['ndcg@20']:.4f} on {len(report_users)} held-out validation users"
    )
    test = measure(stage, "test", None)
    test.pop("per_user", None)
    out["test"] = test
    return out


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, default=float) + "\n"


@contextmanager
def _epoch_bars(enabled: bool, console: Console | None, label: str = "epoch") -> Iterator[Any]:
    """A per-epoch progress bar factory (loss so far), or ``None`` when quiet."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps · loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bars:

        def epoch_bar(epoch: int) -> Callable[[int, int, float], None]:
            task = bars.add_task(f"{label} {epoch}", total=None, loss=float("nan"))

            def advance(step: int, steps: int, loss: float) -> None:
                bars.update(task, completed=step, total=steps, loss=loss)

            return advance

        yield epoch_bar


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(metric, valid, test)`` rows with 95% intervals, for printing."""
    rows = []
    valid, test = metrics.get("valid", {}), metrics.get("test", {})
    for name in valid.get("metrics", {}):
        cells = []
        for part in (valid, test):
            value = part.get("metrics", {}).get(name)
            ci = part.get("ci", {}).get(name)
            text = "-" if value is None else f"{value:.4f}"
            if ci:
                text += f" [{ci[0]:.4f}, {ci[1]:.4f}]"
            cells.append(text)
        rows.append((name, cells[0], cells[1]))
    return rows
