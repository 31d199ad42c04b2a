"""The run flow: one table of stages, executed in its order, and printed from the same table.

``fusionrec run`` (and :meth:`fusionrec.core.api.Pipeline.run`) executes :data:`STAGES`: data → features → train →
index → rerank → evaluate → report. Each stage is one small function with one job. A stage that writes artifacts
is *done* when the manifest says so, its artifacts verify against their checksums, and the pipeline sections it
depends on (its own and every earlier stage's) are what they were when it ran; a done stage is restored from its
artifacts instead of being redone. So a run killed mid-training continues where it stopped, and a pipeline edited
downstream (``ranker``, ``retriever``, ``evaluate``) redoes only the stages whose inputs changed, as a build
system would. ``redo`` forces a stage and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import yaml

from fusionrec.core.assembly import loading
from fusionrec.core.assembly.config import EvaluateConfig, PipelineSpec, dumps_pipeline
from fusionrec.core.engine import evaluation, features, ranker_data, ranker_fit
from fusionrec.core.engine.context import RunContext, prepare
from fusionrec.core.engine.learners import Learner, Trained, check_folder, learner_for
from fusionrec.core.engine.two_stage import DEFAULT_CANDIDATES, Seen, TwoStage
from fusionrec.core.engine.two_tower import Histories
from fusionrec.core.errors import FusionrecError
from fusionrec.registry import Registry

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
METRICS = "metrics.json"
PER_USER = "per_user.csv"
"""Each evaluated user's metrics on the served path (``part``, ``user``, one column per metric), for paired
comparisons of runs (``fusionrec compare``)."""
INDEX = "index"
RANKER = "ranker"
RANKER_VALID = "ranker-valid"
"""With ``train.refit``: the ranker fitted on the train-only model's candidates, which validation is scored with."""
RERANK = "rerank.json"
PARTS: tuple[evaluation.Part, evaluation.Part] = ("valid", "test")


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes:
        name: as the table and the manifest say it.
        sections: the pipeline sections that configure it (its inputs, with every earlier stage's).
        execute: does the stage's work on the context (and marks it done when it writes artifacts).
        restore: for a stage that writes artifacts: puts what a done stage produced back into the context.
        applies: whether the pipeline has this stage at all.
        artifacts: what the stage records in the run (its done-ness is checked on them).
    """

    name: str
    sections: tuple[str, ...]
    execute: Callable[[RunContext], bool | None]
    restore: Callable[[RunContext], None] | None = None
    applies: Callable[[PipelineSpec], bool] = lambda spec: True
    artifacts: Callable[[PipelineSpec], tuple[str, ...]] = lambda spec: ()


# data and features: cheap to redo (the feature cache makes a second run encode nothing), so never persisted ---------


def run_data(ctx: RunContext) -> None:
    ctx.loaded = loading.load_data(ctx.spec, ctx.registry)
    ctx.split = loading.run_split(ctx.loaded)
    lines = [f"{key}: {value}" for key, value in loading.info_rows(loading.describe(ctx.loaded))]
    lines += loading.report_lines(ctx.loaded.data.report)
    counts = ctx.split.counts()
    sizes = " / ".join(f"{part} {counts[part]['interactions']:,}" for part in ("train", "valid", "test"))
    lines.append(f"split ({loading.split_name(ctx.loaded)}): {sizes} interactions")
    ctx.tell("data", loaded=ctx.loaded, split=ctx.split, lines=lines)


def run_features(ctx: RunContext) -> None:
    ctx.prepared = prepare(
        ctx.need_loaded(), ctx.need_split(), ctx.registry, progress=ctx.progress, console=ctx.console
    )
    computed = ctx.prepared.features_run
    ctx.tell("features", prepared=ctx.prepared, lines=features.summary_lines(computed) if computed is not None else [])


# train -----------------------------------------------------------------------------------------------------------


def run_train(ctx: RunContext) -> bool:
    """Train (and refit) the pipeline's model; ``False`` when stopped before the end (``stop_after``)."""
    started = time.perf_counter()
    seconds = round(ctx.need_prepared().feature_seconds, 3)
    ctx.run.mark("train", "running", features_seconds=seconds)
    trained = learner_for(ctx.spec).train(ctx)
    if trained is None:
        return False
    ctx.trained = trained
    ctx.run.mark("train", "done", seconds=round(time.perf_counter() - started, 3), summary=trained.summary)
    ctx.tell("train", summary=trained.summary, refit=_refit_line(trained.summary))
    return True


def restore_train(ctx: RunContext) -> None:
    ctx.trained = learner_for(ctx.spec).load(ctx)
    ctx.tell("train", summary=ctx.trained.summary, refit=_refit_line(ctx.trained.summary), reused=True)


def _refit_line(summary: dict[str, Any]) -> str | None:
    from fusionrec.core.engine.refit import line

    return line(summary["refit"]) if summary.get("refit") else None


def _learner_artifacts(spec: PipelineSpec) -> tuple[str, ...]:
    learner: Learner = learner_for(spec)
    return learner.artifacts


# index -----------------------------------------------------------------------------------------------------------


def _two_tower_with(section: str) -> Callable[[PipelineSpec], bool]:
    return lambda spec: spec.model is None and getattr(spec, section) is not None


def run_index(ctx: RunContext) -> None:
    """Build the retriever over the final item vectors (ids = internal item ids) and save it in the run."""
    spec, trained = ctx.spec, _trained(ctx)
    assert spec.retriever is not None and trained.scorer is not None
    started = time.perf_counter()
    retriever = ctx.registry.build(spec.retriever)
    vectors = trained.scorer.item_vectors.numpy().astype(np.float32)
    retriever.build(vectors, np.arange(vectors.shape[0], dtype=np.int64))
    retriever.save(ctx.run.path / INDEX)
    ctx.run.record(INDEX)
    info = {"type": spec.retriever.type, "items": len(retriever), "seconds": round(time.perf_counter() - started, 3)}
    ctx.run.mark("index", "done", **info)
    ctx.served = _two_stage(ctx, retriever=retriever)


def restore_index(ctx: RunContext) -> None:
    assert ctx.spec.retriever is not None
    check_folder(ctx.run, INDEX)
    retriever = type(ctx.registry.build(ctx.spec.retriever)).load(ctx.run.path / INDEX)
    ctx.served = _two_stage(ctx, retriever=retriever)


# rerank ----------------------------------------------------------------------------------------------------------


def run_rerank(ctx: RunContext) -> None:
    """Fit the ranker on a time slice of train and judge it on every validation user (:mod:`ranker_fit`); with
    ``train.refit``, refit it on the refit model's candidates over train + valid."""
    spec, split = ctx.spec, ctx.need_split()
    assert spec.ranker is not None
    settings = _ranker_settings(ctx)
    judged = evaluated_path(ctx, "valid")  # the train-only model under train.refit
    source = _item_source(ctx, judged)
    ranker = ctx.registry.build(spec.ranker)
    fitted = ranker_fit.fit_on_slice(ranker, judged, split.train, source, settings, spec.train.seed)
    stage = ranker_fit.with_inputs(replace(judged, ranker=ranker, apply_ranker=True), source, split.train, settings)
    before = _measure(ctx, stage.without_ranker(), "valid", None)
    after = _measure(ctx, stage, "valid", None)
    users = int(split.valid["user"].nunique())
    judgement = ranker_fit.verdict(before["metrics"]["ndcg@20"], after["metrics"]["ndcg@20"], users)
    served = served_path(ctx)
    refit = None
    if served.scorer is not judged.scorer:  # train.refit: the served towers saw valid, so does the served ranker
        ranker.save(ctx.run.path / RANKER_VALID)
        ctx.run.record(RANKER_VALID)
        ctx.judged_ranker = ranker
        ranker = ctx.registry.build(spec.ranker)
        known = evaluation.known_interactions(split, "test")
        refit = ranker_fit.fit_on_slice(ranker, served, known, _item_source(ctx, served), settings, spec.train.seed)
    ranker.save(ctx.run.path / RANKER)
    ctx.run.record(RANKER)
    record = {
        "fit": fitted,
        "refit": refit,
        "features": fitted["features"],
        "protocol": f"ranker fitted on the model's top-{judged.candidates} candidates over a time slice of train "
        f"(each user's last {settings.holdout} train interactions as labels; valid and test never read); "
        "validation before/after measured on every validation user"
        + ("; the served ranker refitted the same way on the refit model over train + valid" if refit else ""),
        "valid_before": before,
        "valid_after": after,
        "verdict": judgement["line"],
        "helped": judgement["helped"],
    }
    ctx.run.write_json(RERANK, record)
    ctx.run.mark("rerank", "done", helped=judgement["helped"])
    _apply_ranker(ctx, ranker, record)


def restore_rerank(ctx: RunContext) -> None:
    assert ctx.spec.ranker is not None
    check_folder(ctx.run, RANKER)
    kind = type(ctx.registry.build(ctx.spec.ranker))
    ranker = kind.load(ctx.run.path / RANKER)
    if (ctx.run.path / RANKER_VALID).is_dir():
        check_folder(ctx.run, RANKER_VALID)
        ctx.judged_ranker = kind.load(ctx.run.path / RANKER_VALID)
    _apply_ranker(ctx, ranker, ctx.run.read_json(RERANK))


def _ranker_settings(ctx: RunContext) -> ranker_data.RankerDataSettings:
    config = ctx.spec.evaluate if ctx.spec.evaluate is not None else EvaluateConfig()
    return ranker_data.RankerDataSettings(
        holdout=config.ranker_holdout, candidates=config.candidates, recent=config.ranker_recent
    )


def _item_source(ctx: RunContext, stage: TwoStage) -> ranker_data.ItemSource:
    loaded = ctx.need_loaded()
    if ctx.prepared is None:  # an opened run (serving): the features stage has nothing to restore; the cache has them
        run_features(ctx)
    return ranker_fit.item_source(stage, ctx.need_prepared().features, loaded.data.items, loaded.data.n_users)


def set_rerank(ctx: RunContext, mode: str) -> None:
    """Serve with another ``--rerank`` mode than the run was evaluated with (``fusionrec recommend --rerank``)."""
    ctx.rerank = mode
    if ctx.served is not None and ctx.served.ranker is not None and "rerank" in ctx.metrics:
        ctx.served = replace(ctx.served, apply_ranker=ranker_fit.applies(mode, ctx.metrics["rerank"].get("helped")))


def _apply_ranker(ctx: RunContext, ranker: Any, record: dict[str, Any]) -> None:
    applied = ranker_fit.applies(ctx.rerank, record.get("helped"))
    served = replace(served_path(ctx), ranker=ranker, apply_ranker=applied)
    if record.get("features"):  # a ranker fitted with the extra features reads them when serving too
        everything = ctx.need_loaded().data.interactions
        served = ranker_fit.with_inputs(served, _item_source(ctx, served), everything, _ranker_settings(ctx))
    ctx.served = served
    ctx.metrics["rerank"] = {
        **record,
        "applied": applied,
        "mode": ctx.rerank,
    }
    ctx.tell("rerank", verdict=record["verdict"], applied=applied, mode=ctx.rerank)


# evaluate --------------------------------------------------------------------------------------------------------


def run_evaluate(ctx: RunContext) -> None:
    """Validation and test metrics of the served path (retriever, then ranker when applied) and of the exact path."""
    served = served_path(ctx)
    trained = _trained(ctx)
    results: dict[str, Any] = {}
    refit = trained.summary.get("refit")
    kept: dict[str, evaluation.EvalResult] = {}
    for part in PARTS:
        results[part] = _measure(ctx, evaluated_path(ctx, part), part, None, keep=kept)
    if refit is not None:
        for name, protocol in _refit_protocols(ctx, refit).items():
            results[name]["protocol"] = {**results[name]["protocol"], **protocol}
    if served.retriever is not None or served.reranks:
        exact = served.exact()
        results["exact"] = {
            part: _measure(ctx, exact, part, None) for part in PARTS if part == "test" or trained.selection is None
        }
    if served.retriever is not None:
        results["index"] = _index_recall(ctx, served)
    if "rerank" in ctx.metrics:
        results["rerank"] = ctx.metrics["rerank"]
    _write_per_user(ctx, kept)
    ctx.run.write_json(METRICS, results)
    ctx.run.mark("evaluate", "done", rerank=ctx.rerank)
    ctx.metrics = results
    ctx.tell("evaluate", metrics=results)


def evaluated_path(ctx: RunContext, part: evaluation.Part, exact: bool = False) -> TwoStage:
    """The path whose lists evaluation scores for ``part`` (``exact``: with an exact search): the served one, but
    with ``train.refit``, validation is scored by the train-only model validation chose (the refit saw valid)."""
    trained = _trained(ctx)
    if part == "valid" and trained.selection is not None:
        path = _two_stage(ctx, trained=trained.selection)
        if ctx.judged_ranker is not None and served_path(ctx).reranks:  # the ranker fitted for this model
            path = replace(path, ranker=ctx.judged_ranker, apply_ranker=True)
            path = ranker_fit.with_inputs(path, _item_source(ctx, path), ctx.need_split().train, _ranker_settings(ctx))
    else:
        path = served_path(ctx)
    return path.exact() if exact else path


def restore_evaluate(ctx: RunContext) -> None:
    ctx.metrics = ctx.run.read_json(METRICS)
    ctx.tell("evaluate", metrics=ctx.metrics, reused=True)


def _write_per_user(ctx: RunContext, kept: dict[str, evaluation.EvalResult]) -> None:
    import pandas as pd

    user_ids = np.asarray(ctx.need_loaded().data.user_ids)
    frames = [
        pd.DataFrame({"part": part, "user": user_ids[result.users], **result.per_user}) for part, result in kept.items()
    ]
    ctx.run.write_text(PER_USER, pd.concat(frames).to_csv(index=False))


def _measure(
    ctx: RunContext,
    stage: TwoStage,
    part: evaluation.Part,
    users: Any,
    keep: dict[str, evaluation.EvalResult] | None = None,
) -> dict[str, Any]:
    """Evaluate ``stage`` on ``part`` (known items masked, the split's candidates), per the pipeline's protocol;
    ``keep`` receives the result with its per-user values."""
    split, n_items = ctx.need_split(), ctx.need_loaded().data.n_items
    config = ctx.spec.evaluate if ctx.spec.evaluate is not None else EvaluateConfig()
    known = evaluation.known_interactions(split, part)
    histories = Histories.from_frame(known, ctx.need_loaded().data.n_users)
    blocked, _ = evaluation.blocked_items(split, part, n_items)
    score = stage.score_fn(histories, known, np.flatnonzero(blocked) if blocked is not None else None)
    protocol = {
        "dataset": ctx.spec.data.type if ctx.spec.data is not None else None,
        "split": loading.split_name(ctx.need_loaded()),
        "path": describe_path(stage),
    }
    if stage.reranks:
        protocol["ranker fitted on"] = "its model's candidates over a time slice of train (+ valid for test)"
    result = evaluation.evaluate(
        score, split, part, metric_names(ctx.spec), n_items, registry=ctx.registry,
        bootstrap=config.bootstrap, seed=ctx.spec.train.seed, users=users, protocol=protocol,
    )  # fmt: skip
    if keep is not None:
        keep[part] = result
    out = result.to_dict()
    out.pop("per_user", None)
    return out


def describe_path(stage: TwoStage) -> str:
    """How a list was produced, in words (reports say it beside every number)."""
    if stage.model is not None:
        return "model scores over every item"
    retrieval = f"retriever '{type(stage.retriever).__name__}'" if stage.retriever is not None else "exact search"
    ranker = f", top {stage.candidates} reranked by '{type(stage.ranker).__name__}'" if stage.reranks else ""
    return retrieval + ranker


def _index_recall(ctx: RunContext, served: TwoStage, k: int = 20) -> dict[str, Any]:
    """Recall@k of the retriever against the exact search, over the test users (retrieval only, no ranker)."""
    split, data = ctx.need_split(), ctx.need_loaded().data
    known = evaluation.known_interactions(split, "test")
    users = np.sort(split.test["user"].unique()).astype(np.int64)
    histories = Histories.from_frame(known, data.n_users)
    hits = total = 0
    for start in range(0, len(users), 1024):
        batch = users[start : start + 1024]
        queries = served.query_vectors(batch, histories)
        seen = Seen.of_frame(known, batch)
        approx = served.retrieve(queries, seen, k).items
        exact = served.exact().retrieve(queries, seen, k).items
        for a, e in zip(approx.tolist(), exact.tolist(), strict=True):
            truth = {i for i in e if i >= 0}
            hits += len(truth & set(a))
            total += len(truth)
    return {f"recall@{k} vs exact": round(hits / max(total, 1), 4), "users": len(users), "k": k}


def _refit_protocols(ctx: RunContext, refit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from fusionrec.core.engine.refit import protocols

    return protocols({}, refit.get("epochs"))


# report ----------------------------------------------------------------------------------------------------------


def run_report(ctx: RunContext) -> None:
    """Sample recommendations and ``report.md`` (written by :mod:`fusionrec.core.engine.report`)."""
    from fusionrec.core.engine import report
    from fusionrec.core.engine.recommend import Recommender

    recommender = Recommender(ctx.need_loaded().data, served_path(ctx), _trained(ctx).modalities)
    users = list(ctx.sample_users) or [str(recommender.data.user_ids[0])]
    samples = dict(zip(users, recommender.recommend(users, 10), strict=True))
    report.write_report(ctx.run, ctx.metrics, samples)
    ctx.tell("report", samples=samples, report=ctx.run.path / report.REPORT, chart=ctx.run.path / report.CHART)


def _rerank_artifacts(spec: PipelineSpec) -> tuple[str, ...]:
    return (RANKER, RERANK, RANKER_VALID) if spec.train.refit else (RANKER, RERANK)


# the table -------------------------------------------------------------------------------------------------------

STAGES: tuple[Stage, ...] = (
    Stage("data", ("data",), run_data),
    Stage("features", ("encoders",), run_features),  # `features` (cache, batch size, workers) changes no vector
    Stage(
        "train",
        ("fuser", "user", "model", "train"),
        run_train,
        restore_train,
        artifacts=_learner_artifacts,
    ),
    Stage("index", ("retriever",), run_index, restore_index, _two_tower_with("retriever"), lambda s: (INDEX,)),
    Stage("rerank", ("ranker",), run_rerank, restore_rerank, _two_tower_with("ranker"), _rerank_artifacts),
    Stage("evaluate", ("evaluate",), run_evaluate, restore_evaluate, artifacts=lambda s: (METRICS,)),
    Stage("report", (), run_report),
)
"""The stages of a run, in run order: what ``fusionrec run`` executes and the table it prints."""

STAGE_NAMES = tuple(stage.name for stage in STAGES)


@dataclass(frozen=True)
class PlannedStage:
    """A row of the stage table: the stage, its component(s), their plugins, whether it runs."""

    name: str
    component: str
    plugin: str
    status: str


def plan(spec: PipelineSpec, registry: Registry, until: str = "report") -> list[PlannedStage]:
    """The rows ``fusionrec run`` prints, from :data:`STAGES` (the list that also drives execution)."""
    rows = []
    for stage in STAGES[: STAGE_NAMES.index(until) + 1]:
        specs = []
        for section in stage.sections:
            if section == "encoders":
                specs += [(f"{modality}: ", enc) for modality, enc in spec.encoders.items()]
            elif section in ("data", "fuser", "user", "model", "retriever", "ranker"):
                one = getattr(spec, section)
                specs += [("", one)] if one is not None else []
        if stage.name == "evaluate":
            metrics = ", ".join(spec.evaluate.metrics) if spec.evaluate else ", ".join(DEFAULT_METRICS) + " (default)"
            rows.append(PlannedStage(stage.name, metrics, "-", "runs"))
            continue
        status = "runs" if stage.applies(spec) else "not configured"
        if stage.name == "train" and not specs:
            status = "runs"  # ids only: no fuser, the user tower's section is still required (validate says so)
        components = ", ".join(f"{label}{s.kind} '{s.type}'" for label, s in specs) or "-"
        plugins = ", ".join(sorted({registry.table(s.kind)[s.type].plugin for _, s in specs})) or "-"
        rows.append(PlannedStage(stage.name, components, plugins, status))
    return rows


def metric_names(spec: PipelineSpec) -> list[str]:
    names = list(spec.evaluate.metrics) if spec.evaluate is not None else list(DEFAULT_METRICS)
    return names + [m for m in ("recall@20", "ndcg@20") if m not in names]


def stage_inputs(ctx: RunContext, stage: Stage) -> dict[str, Any]:
    """What this stage depends on: the resolved sections of it and every earlier stage (and, from the rerank stage
    on, the candidates per user and the ranker's holdout and recent items; for evaluate, whether the ranker is
    applied), as plain JSON data."""
    resolved = yaml.safe_load(dumps_pipeline(ctx.spec)) or {}
    position = STAGE_NAMES.index(stage.name)
    inputs: dict[str, Any] = {section: resolved.get(section) for s in STAGES[: position + 1] for section in s.sections}
    if position >= STAGE_NAMES.index("rerank"):
        inputs["candidates"] = ctx.spec.evaluate.candidates if ctx.spec.evaluate is not None else DEFAULT_CANDIDATES
        if ctx.spec.ranker is not None:  # what the ranker learns from (left out without one: older runs still hold)
            settings = _ranker_settings(ctx)
            inputs["ranker data"] = [settings.holdout, settings.recent]
    if position >= STAGE_NAMES.index("evaluate"):
        inputs["rerank mode"] = ctx.rerank
    result: dict[str, Any] = json.loads(json.dumps(inputs, sort_keys=True, default=str))
    return result


def fingerprint(ctx: RunContext, stage: Stage) -> str:
    """A hash of :func:`stage_inputs`."""
    return _digest(stage_inputs(ctx, stage))


def _digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def same_inputs(ctx: RunContext, stage: Stage, inputs: dict[str, Any] | None = None) -> bool:
    """Whether the stage was made from the inputs it has now (``inputs``: :func:`stage_inputs`, when already
    computed): the same fingerprint, or inputs that differ only by keys the stage's recorded inputs did not have —
    parameters a later fusionrec added, which keep the behaviour they had before by default — so an upgrade that
    adds a parameter does not redo every finished run."""
    entry = ctx.run.stage(stage.name)
    current = inputs if inputs is not None else stage_inputs(ctx, stage)
    if entry.get("fingerprint") == _digest(current):
        return True
    recorded = entry.get("inputs")
    return recorded is not None and only_new_keys(recorded, current)


def only_new_keys(old: Any, new: Any) -> bool:
    """``new`` equals ``old`` except for keys of a mapping that ``old`` lacks."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(key in new and only_new_keys(value, new[key]) for key, value in old.items())
    return bool(old == new)


def is_done(ctx: RunContext, stage: Stage) -> bool:
    """Done: the manifest says so, for the same inputs, and every artifact of the stage verifies."""
    return not_done_because(ctx, stage) is None


def not_done_because(ctx: RunContext, stage: Stage, *, inputs: bool = True) -> str | None:
    """Why ``stage`` is not done (``None``: it is): its status, other inputs, or which artifact fails its checksum.

    Args:
        inputs: also compare the stage's inputs with those it ran with. A reader of a finished run (``Run.open``)
            skips this: the run's ``config.yaml`` is itself checksummed, so the run is what it says it is.
    """
    entry = ctx.run.stage(stage.name)
    if entry.get("status") != "done":
        return f"its status is {entry.get('status', 'not started')!r}"
    if inputs and not same_inputs(ctx, stage):
        return "it was made from other settings than the run's config.yaml"
    broken = [
        problem for name in stage.artifacts(ctx.spec) if not ctx.run.intact(name) for problem in ctx.run.problems(name)
    ]
    return "; ".join(broken) if broken else None


def execute(ctx: RunContext, until: str = "report", redo: str | None = None) -> bool:
    """Run the stages up to ``until`` (included); ``False`` when training stopped early (``stop_after``)."""
    if redo is not None and redo not in STAGE_NAMES:
        raise FusionrecError(f"--redo: unknown stage {redo!r}; the stages are {', '.join(STAGE_NAMES)}")
    stale = False
    for stage in STAGES[: STAGE_NAMES.index(until) + 1]:
        if not stage.applies(ctx.spec):
            continue
        stale = stale or stage.name == redo
        reuse = stage.restore is not None and not stale and is_done(ctx, stage)
        if stage.name == "train" and ctx.ranks is not None:
            ctx.ranks.announce(train=not reuse)  # the other ranks wait for this word (see follow)
        if reuse:
            assert stage.restore is not None
            stage.restore(ctx)
            continue
        if stage.restore is not None:
            stale = True  # everything after a stage that runs again is redone
            inputs = stage_inputs(ctx, stage)
            if not same_inputs(ctx, stage, inputs) or stage.name == redo:
                # other inputs, or forced: start the stage over (a killed training of the same inputs continues)
                ctx.run.reset(stage.name, *(("refit",) if stage.name == "train" else ()))
            ctx.run.mark(stage.name, "running", fingerprint=_digest(inputs), inputs=inputs)
        if stage.execute(ctx) is False:
            return False
        if stage.restore is not None:
            ctx.run.mark(stage.name, "done")
    return True


def follow(ctx: RunContext) -> bool:
    """A rank other than 0 under torchrun: wait for rank 0's word, then load the data and features and train
    beside it (:meth:`~fusionrec.core.engine.learners.TwoTowerLearner.follow`); ``ctx.run`` is never touched.

    Returns:
        Whether this rank trained (false: rank 0 found the train stage done).
    """
    assert ctx.ranks is not None and not ctx.ranks.main
    if not ctx.ranks.listen():
        return False
    run_data(ctx)
    run_features(ctx)
    learner_for(ctx.spec).train(ctx)
    return True


def _trained(ctx: RunContext) -> Trained:
    assert ctx.trained is not None, "the train stage runs first"
    return ctx.trained


def _two_stage(ctx: RunContext, *, trained: Trained | None = None, retriever: Any = None) -> TwoStage:
    trained = trained if trained is not None else _trained(ctx)
    config = ctx.spec.evaluate if ctx.spec.evaluate is not None else EvaluateConfig()
    exact = None
    if retriever is not None and trained.scorer is not None:
        # the exact path searches with the `exact` retriever plugin over the same vectors
        exact = ctx.registry.build(ctx.registry.spec("retriever", {"type": "exact"}))
        vectors = trained.scorer.item_vectors.numpy().astype(np.float32)
        exact.build(vectors, np.arange(vectors.shape[0], dtype=np.int64))
    return TwoStage(
        ctx.need_loaded().data.n_items,
        scorer=trained.scorer,
        model=trained.model,
        item_weights=trained.item_weights,
        retriever=retriever,
        candidates=config.candidates,
        exact_retriever=exact,
    )


def served_path(ctx: RunContext) -> TwoStage:
    """The path users get: retriever (when the pipeline has one) and ranker (when applied)."""
    if ctx.served is None:
        ctx.served = _two_stage(ctx)
    return ctx.served
