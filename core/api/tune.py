"""``fusionrec tune``: search a pipeline's declared ranges with Optuna, on validation only.

Each trial is a pipeline with concrete values (:mod:`fusionrec.core.api.space`), trained through the public API
(:meth:`Pipeline.train`) into ``OUT/trials/NNNN``. Only validation metrics guide the search: the objective is the
trial's validation metric (NDCG@20 by default), and a trial whose per-epoch validation value falls below the median
of earlier trials at the same epoch is pruned (Optuna's ``MedianPruner``). The study lives in ``OUT/study.db``
(Optuna's SQLite storage), so a killed study continues: ``--trials N`` is the study's total, and a trial killed
while running is tried again with the same values, its run folder resumed. At the end ``best.yaml`` (the best trial's
pipeline, every default filled in, ready to run), ``trials.csv``, ``trials.md`` and ``trials.png`` are written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionrec.core.api import Pipeline
from fusionrec.core.api.space import Range, Space, read_space, with_values
from fusionrec.core.assembly.config import dumps_pipeline
from fusionrec.core.engine import stages
from fusionrec.core.engine.learners import SELECTION
from fusionrec.core.engine.rundir import writer_lock
from fusionrec.core.errors import FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text
from fusionrec.registry import Registry, get_registry

if TYPE_CHECKING:
    import optuna

STUDY = "study.db"
STUDY_NAME = "fusionrec-tune"
BEST = "best.yaml"
TRIALS = "trials"
TABLE_CSV = "trials.csv"
TABLE_MD = "trials.md"
PLOT = "trials.png"
DEFAULT_METRIC = "ndcg@20"

logger = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """What a study found.

    Attributes:
        out: the study's folder.
        metric: the validation metric it maximised.
        best: the best complete trial's number, validation value and values (``None`` when no trial completed).
        counts: trials by state (``COMPLETE``, ``PRUNED``, ``FAIL``).
        rows: one row per trial, as in ``trials.csv``.
    """

    out: Path
    metric: str
    best: dict[str, Any] | None
    counts: dict[str, int]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_yaml(self) -> Path | None:
        return self.out / BEST if self.best is not None else None


def tune(
    pipeline: str | Path,
    out: str | Path,
    *,
    trials: int,
    metric: str = DEFAULT_METRIC,
    timeout: float | None = None,
    default_space: bool = False,
    rerank: str = "never",
    seed: int = 0,
    registry: Registry | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    """Run (or continue) a study of ``pipeline``'s search ranges in ``out`` until it holds ``trials`` finished trials
    (or ``timeout`` seconds have passed), then write the best pipeline, the table and the plot.

    Args:
        metric: the validation metric to maximise; pruning reads it per epoch when it is recall@20 or ndcg@20.
        default_space: fill the default search space (docs/tuning.md) when the file declares no range.
        rerank: each trial's ``--rerank`` mode (``never``: the retrieval path; the pipeline's ranker is still fit).
        on_trial: told each finished trial's row.

    Raises:
        ConfigError: a bad range, or a value of a range that its component rejects.
        FusionrecError: ``out`` holds a study over other ranges or another metric.
    """
    registry = registry if registry is not None else get_registry()
    space = read_space(pipeline, registry, default=default_space)
    _check_metric(space, metric, registry)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise FusionrecError(f"--trials must be a positive number of trials, got {trials!r}")
    target = Path(out)
    with writer_lock(target):
        target.mkdir(parents=True, exist_ok=True)
        study, storage = _open_study(target, space, metric, seed)
        _retry_killed(study, storage)
        finished = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("killed")]
        remaining = trials - len(finished)
        if remaining > 0:
            objective = _Objective(space, target, metric, rerank, registry)
            callbacks = [lambda s, t: on_trial(row_of(t, space, metric))] if on_trial is not None else []
            study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(FusionrecError,), callbacks=callbacks)
        return _write_outputs(study, space, target, metric, registry)


class _Objective:
    """One trial: suggest the values, train the pipeline in its folder, return its validation metric."""

    def __init__(self, space: Space, out: Path, metric: str, rerank: str, registry: Registry) -> None:
        self.space, self.out, self.metric, self.rerank, self.registry = space, out, metric, rerank, registry

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = {r.path: suggest(trial, r) for r in self.space.ranges}
        folder = trial.user_attrs.get("run") or f"{TRIALS}/{trial.number:04d}"
        trial.set_user_attr("run", folder)
        metric = self.metric

        def on_event(name: str, facts: dict[str, Any]) -> None:
            record = facts.get("record", {}) if name == "epoch" else {}
            value = (record.get("valid") or {}).get(metric)
            if value is None:
                return
            trial.report(float(value), int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation {metric} {value:.4f} at epoch {record['epoch']}")

        try:
            pipeline = Pipeline.load(with_values(self.space.data, values), self.registry, base_dir=self.space.base_dir)
            run = pipeline.train(self.out / folder, rerank=self.rerank, on_event=on_event)
        except FusionrecError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        trial.set_user_attr("epochs", run.summary.get("epoch"))
        return float(run.metrics["valid"]["metrics"][metric])


def suggest(trial: optuna.Trial, r: Range) -> Any:
    """The trial's value for range ``r``."""
    if r.kind == "log_uniform":
        return trial.suggest_float(r.name, r.low, r.high, log=True)
    if r.kind == "uniform":
        return trial.suggest_float(r.name, r.low, r.high)
    if r.kind == "int":
        return trial.suggest_int(r.name, int(r.low), int(r.high), step=r.step, log=r.log)
    if all(v is None or isinstance(v, (bool, int, float, str)) for v in r.values):
        return trial.suggest_categorical(r.name, list(r.values))
    # lists and mappings are stored by their JSON text (Optuna's choices are plain values)
    return json.loads(trial.suggest_categorical(r.name, [json.dumps(v) for v in r.values]))


def value_of(r: Range, stored: Any) -> Any:
    """A range's value as the study stored it, back as the pipeline takes it."""
    plain = r.kind != "choice" or all(v is None or isinstance(v, (bool, int, float, str)) for v in r.values)
    return stored if plain else json.loads(stored)


def _check_metric(space: Space, metric: str, registry: Registry) -> None:
    pipeline = Pipeline.load(
        with_values(space.data, {r.path: r.ends()[0] for r in space.ranges}), registry, base_dir=space.base_dir
    )
    names = stages.metric_names(pipeline.spec)
    if metric not in names:
        raise FusionrecError(
            f"--metric {metric}: not a metric the pipeline evaluates; choose one of {', '.join(names)} (or add it to "
            "the pipeline's evaluate.metrics)"
        )
    if metric not in SELECTION:
        logger.warning("validation %s is not measured per epoch (only %s): trials are not pruned", metric, SELECTION)


def _open_study(out: Path, space: Space, metric: str, seed: int) -> tuple[optuna.Study, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY).resolve()}")
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        # epochs are reported as steps 1, 2, …; Optuna prunes from step == n_warmup_steps on, so 2: never on the
        # first epoch, where a slow-starting setting (a low lr) still looks worse than it ends
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    # seeded by the trials so far: a continued study draws new values, not the first session's again
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    fingerprint = {"space": space.fingerprint(), "metric": metric}
    if not study.user_attrs:
        for key, value in fingerprint.items():
            study.set_user_attr(key, value)
    elif {key: study.user_attrs.get(key) for key in fingerprint} != fingerprint:
        raise FusionrecError(
            f"{out}: holds a study over other search ranges or another metric ({study.user_attrs.get('metric')}); "
            "continue it with the same pipeline and --metric, or tune into another --out"
        )
    return study, storage


def _retry_killed(study: optuna.Study, storage: Any) -> None:
    """A trial left running by a killed study is marked failed and tried again with the same values and folder
    (its run resumes where training stopped)."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(STUDY_NAME)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "killed", True)  # not counted in --trials: its retry is
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        retry = {"run": trial.user_attrs.get("run"), "retry_of": trial.number}
        study.enqueue_trial(dict(trial.params), user_attrs=retry)


def row_of(trial: optuna.trial.FrozenTrial, space: Space, metric: str) -> dict[str, Any]:
    """A trial as a row of ``trials.csv``."""
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name, f"valid {metric}": trial.value}
    for r in space.ranges:
        row[r.name] = trial.params.get(r.name)
    steps = trial.intermediate_values
    row["epochs"] = trial.user_attrs.get("epochs", max(steps) if steps else None)
    row["run"] = trial.user_attrs.get("run")
    row["note"] = trial.user_attrs.get("error") or (
        f"retry of trial {trial.user_attrs['retry_of']}" if "retry_of" in trial.user_attrs else ""
    )
    if trial.user_attrs.get("killed"):
        row["note"] = "killed while running; tried again"
    return row


def _write_outputs(study: optuna.Study, space: Space, out: Path, metric: str, registry: Registry) -> TuneResult:
    rows = [row_of(t, space, metric) for t in study.trials]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    best = None
    if any(t.state.name == "COMPLETE" for t in study.trials):
        trial = study.best_trial
        values = {r.path: value_of(r, trial.params[r.name]) for r in space.ranges}
        params = {format_name(p): v for p, v in values.items()}
        best = {"trial": trial.number, "value": trial.value, "params": params}
        spec = Pipeline.load(with_values(space.data, values), registry, base_dir=space.base_dir).validate().spec
        chosen = "\n".join(f"#   {name}: {value!r}" for name, value in params.items())
        header = (
            f"# Chosen by `fusionrec tune {space.file}`: trial {trial.number} of {len(rows)}, validation {metric} "
            f"{trial.value:.4f} (test was not looked at).\n# Values:\n{chosen}\n"
        )
        atomic_write_text(out / BEST, header + dumps_pipeline(spec))
    _write_csv(out / TABLE_CSV, rows)
    atomic_write_text(out / TABLE_MD, markdown(rows, metric, best))
    plot(out / PLOT, rows, metric)
    return TuneResult(out, metric, best, counts, rows)


def format_name(path: tuple[str | int, ...]) -> str:
    from fusionrec.core.errors import format_path

    return format_path(path)


def _write_csv(target: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["trial", "state"]
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(target, buffer.getvalue())


def markdown(rows: list[dict[str, Any]], metric: str, best: Mapping[str, Any] | None) -> str:
    """The trials as a Markdown table, the best one marked."""
    if not rows:
        return "No trials.\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row[c]) for c in columns]
        if best is not None and row["trial"] == best["trial"]:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    head = f"Validation {metric} per trial (test is never looked at while tuning).\n\n"
    return head + "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def plot(target: Path, rows: list[dict[str, Any]], metric: str) -> None:
    """Validation metric per trial (pruned trials at their last reported value) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    key = f"valid {metric}"
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    done = [(r["trial"], r[key]) for r in rows if r["state"] == "COMPLETE" and r[key] is not None]
    if done:
        ax.scatter(*zip(*done, strict=True), label="complete", color="tab:blue")
        best, running = [], float("-inf")
        for number, value in done:
            running = max(running, value)
            best.append((number, running))
        ax.step(*zip(*best, strict=True), where="post", label="best so far", color="tab:orange")
    for state, marker in (("PRUNED", "x"), ("FAIL", "v")):
        numbers = [r["trial"] for r in rows if r["state"] == state]
        if numbers:
            ax.scatter(numbers, [ax.get_ylim()[0]] * len(numbers), marker=marker, color="grey", label=state.lower())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(key)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(target, lambda handle: handle.write(buffer.getvalue()))
