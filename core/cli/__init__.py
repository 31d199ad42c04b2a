"""The ``fusionrec`` command line.

A user error (a bad pipeline file, bad data, a broken plugin) prints one clear message and exits 2; a bug prints
one line asking for ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusionrec.core.errors import FusionrecError
from fusionrec.registry import KINDS, Registry, get_registry

STAGE_CHOICES = ["train", "index", "rerank", "evaluate", "report"]
"""The stages ``--redo`` can force (data and features always run; the feature cache makes them cheap)."""
EXIT_USER_ERROR = 2
EXIT_BUG = 1

# Piped output is read by scripts: give tables room instead of rich's 80-column default.
_WIDE = "COLUMNS" not in os.environ
out = Console(highlight=False, soft_wrap=True, width=200 if _WIDE and not sys.stdout.isatty() else None)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=200 if _WIDE and not sys.stderr.isatty() else None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusionrec")
    except PackageNotFoundError:
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), "--version", prog_name="fusionrec")
@click.option("--debug", is_flag=True, help="Show full tracebacks (also FUSIONREC_DEBUG=1).")
def cli(debug: bool) -> None:
    """fusionrec: multimodal fusion recommenders assembled from YAML pipelines and plugins."""


@cli.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins_cmd(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, where they come from and what they register."""
    if ctx.invoked_subcommand is not None:
        return
    registry = get_registry()
    records = list(registry.plugins.values())
    if as_json:
        rows = [
            {
                "name": p.name,
                "source": p.source,
                "distribution": p.distribution,
                "version": p.version,
                "components": p.components,
                "error": p.error,
                "blocked": p.blocked,
            }
            for p in records
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table(title="fusionrec plugins", title_justify="left")
    for column in ("plugin", "source", "distribution", "components"):
        table.add_column(column, overflow="fold")
    for p in records:
        what = ", ".join(p.components) if p.loaded else f"[red]{escape(p.status)}[/red]"
        dist = f"{p.distribution} {p.version or ''}".strip() if p.distribution else "-"
        table.add_row(escape(p.name), p.source, escape(dist), what or "-")
    out.print(table)
    _warn_failed(registry)


@plugins_cmd.command("info")
@click.argument("name")
def plugins_info(name: str) -> None:
    """Show a component's parameters (NAME, or KIND:NAME), or what a plugin registers (its name)."""
    from fusionrec.core.errors import did_you_mean
    from fusionrec.registry.reference import describe_component

    registry = get_registry()
    found = registry.find(name)
    if not found and name in registry.plugins:
        record = registry.plugins[name]
        found = [info for ref in record.components for info in registry.find(ref)]
    if not found:
        every = sorted({n for t in registry.tables.values() for n in t} | set(registry.plugins))
        raise FusionrecError(
            f"no component or plugin called {name!r}.{did_you_mean(name, every)} `fusionrec plugins` lists them."
        )
    for info in found:
        doc = describe_component(info, registry)  # the same description as the component reference
        out.print(f"[bold]{doc.kind} '{escape(doc.name)}'[/bold]  from plugin {escape(doc.origin)}")
        for line in (doc.summary, doc.details, f"In a pipeline: {doc.usage}"):
            if line:
                out.print(line, markup=False)
        if not doc.params:
            out.print("  (no parameters)\n")
            continue
        table = Table(show_edge=False, pad_edge=False)
        for column in ("parameter", "type", "default", "constraints", "description"):
            table.add_column(column, overflow="fold")
        for p in doc.params:
            default = "[bold](required)[/bold]" if p.required else escape(p.default or "")
            table.add_row(
                *(escape(text) for text in (p.name, p.type)), default, escape(p.constraints), escape(p.description)
            )
        out.print(table)
        out.print()


@plugins_cmd.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice([kind.name for kind in KINDS]),
    default="fuser",
    show_default=True,
    help="Kind of the component the package provides.",
)
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    help="Folder to create the package in (default: the current one).",
)
def plugins_new(name: str, kind: str, dest: Path) -> None:
    """Create fusionrec-NAME: a ready plugin package with one working component of KIND, tests and a README.

    NAME (a lower-case identifier) becomes the entry point, the component prefix (NAME.…), the module
    fusionrec_NAME and the distribution fusionrec-NAME. An existing folder is never overwritten.
    """
    from fusionrec.registry.scaffold import create_plugin, variables

    folder = create_plugin(name, kind, dest)
    values = variables(name, kind)
    out.print(f"created {folder} with the {values['kind_words']} {values['component']}:", markup=False)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out.print(f"  {path}", markup=False)
    out.print(f"next: pip install -e {folder} && python -m pytest {folder / 'tests'}", markup=False)


@plugins_cmd.command("reference")
@click.option(
    "--builtin-only",
    is_flag=True,
    help="Only fusionrec's built-in components; installed plugins are not loaded (docs/components.md).",
)
@click.option("--plugin", "plugins", multiple=True, help="Only this plugin's components (repeatable).")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), help="Write to this file.")
@click.option("--check", is_flag=True, help="Write nothing; fail when the --out file differs from what it would get.")
def plugins_reference(builtin_only: bool, plugins: tuple[str, ...], out_file: Path | None, check: bool) -> None:
    """Print (or write) the component reference in Markdown: each component with its parameters."""
    from fusionrec.core.io import atomic_write_text
    from fusionrec.registry.reference import builtin_registry, reference_command, render_reference

    if builtin_only and plugins:
        raise click.UsageError("--builtin-only and --plugin exclude each other")
    if check and out_file is None:
        raise click.UsageError("--check needs --out FILE")
    registry = builtin_registry() if builtin_only else get_registry()
    if not builtin_only:
        _warn_failed(registry)
    command = reference_command(builtin_only=builtin_only, plugins=plugins, out=str(out_file) if out_file else None)
    text = render_reference(registry, plugins=plugins, builtin_only=builtin_only, command=command)
    if out_file is None:
        click.echo(text, nl=False)
    elif check:
        current = out_file.read_text(encoding="utf-8") if out_file.is_file() else None
        if current != text:
            raise FusionrecError(f"{out_file} is out of date; regenerate it with `{command}`")
        out.print(f"{out_file} is up to date", markup=False)
    else:
        atomic_write_text(out_file, text)
        out.print(f"wrote {out_file}", markup=False)


@cli.command("schema")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), help="Write to this file.")
def schema_cmd(out_file: Path | None) -> None:
    """Print (or write) the JSON Schema of pipeline files, built from the installed plugins, for editors."""
    from fusionrec.core.assembly.schema import pipeline_schema
    from fusionrec.core.io import atomic_write_text

    registry = get_registry()
    _warn_failed(registry)
    text = json.dumps(pipeline_schema(registry), indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        click.echo(text, nl=False)
        return
    atomic_write_text(out_file, text)
    out.print(f"wrote {out_file}", markup=False)


@cli.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--resolved", is_flag=True, help="Print the pipeline with every default filled in.")
@click.option(
    "--schema-only", is_flag=True, help="Check sections and parameters only, not whether the pipeline can run."
)
def validate(pipeline: Path, resolved: bool, schema_only: bool) -> None:
    """Check a pipeline file: sections, component names, parameters, and that `run` can run it.

    A file without a `data` section is checked as a fragment (sections and parameters only), and says so.
    """
    from fusionrec.core.api import Pipeline

    registry = get_registry()
    _warn_failed(registry)
    loaded = Pipeline.load(pipeline, registry)
    fragment = loaded.spec.data is None
    if not schema_only and not fragment:
        loaded.validate()
    if resolved:
        out.print(loaded.resolved(), end="", markup=False)
        return
    names = ", ".join(f"{where}={s.type}" for where, s in loaded.spec.components()) or "no components"
    if fragment and not schema_only:
        out.print(f"{pipeline}: valid ({names}) as a fragment: with no `data` section, `fusionrec run` cannot run it")
    else:
        out.print(f"{pipeline}: valid ({names})")


RUN_DIR_HELP = "Run directory (default: runs/<pipeline name>)."
RERANK_HELP = "Apply the ranker: auto (when its validation verdict is positive), always, or never."


@cli.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help=RUN_DIR_HELP + " What still holds is reused.")
@click.option("--user", "sample_users", multiple=True, help="Users to show recommendations for (default: one).")
@click.option("--fresh", is_flag=True, help="Start over in --out (the old run is replaced once the new one starts).")
@click.option("--redo", type=click.Choice(STAGE_CHOICES), help="Force this stage and every stage after it.")
@click.option(
    "--rerank", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help=RERANK_HELP
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(
    pipeline: Path,
    out_dir: Path | None,
    sample_users: tuple[str, ...],
    fresh: bool,
    redo: str | None,
    rerank: str,
    quiet: bool,
) -> None:
    """Run a pipeline: data → features → train → index → rerank → evaluate → report.

    Resumable stage by stage: rerunning into the same run directory redoes only what changed (a killed training
    resumes from its last epoch; an edited `ranker` redoes rerank and evaluate) and nothing that still holds.
    """
    from fusionrec.core.api import Pipeline

    registry = get_registry()
    _warn_failed(registry)
    loaded = Pipeline.load(pipeline, registry).validate()
    if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun, rank 0 speaks for all
        _print_stages(f"pipeline {pipeline}", loaded.stages())
    target = out_dir if out_dir is not None else Path("runs") / pipeline.stem
    done = loaded.run(
        target, fresh=fresh, redo=redo, rerank=rerank, progress=not quiet, console=err,
        on_event=_RunPrinter(target), sample_users=sample_users,
    )  # fmt: skip
    if done.rank:
        return
    if not done.finished:
        out.print(f"stopped early: {target} (rerun the same command to continue)", markup=False)


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate_cmd(run_dir: Path, as_json: bool) -> None:
    """Show a finished run's metrics (validation and test, 95% intervals, protocol), checked against its manifest."""
    from fusionrec.core.api import Run

    metrics = Run.open(run_dir, get_registry()).evaluate()
    if as_json:
        out.print_json(json.dumps(metrics))
        return
    _print_metrics(metrics, f"{run_dir}")


@cli.command("compare")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--part", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option("--metric", "metrics", multiple=True, help="Metric to compare (repeatable; default recall@20, ndcg@20).")
@click.option("--samples", type=click.IntRange(min=100), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare_cmd(
    baseline: Path, candidate: Path, part: str, metrics: tuple[str, ...], samples: int, as_json: bool
) -> None:
    """CANDIDATE against BASELINE, user by user: each metric's ratio and difference with paired bootstrap intervals
    (users resampled once for both runs), from the runs' per-user metrics."""
    from fusionrec.core.api.compare import DEFAULT_METRICS, compare_runs

    rows = compare_runs(baseline, candidate, part=part, metrics=metrics or DEFAULT_METRICS, samples=samples)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"{candidate} vs {baseline} on {part} ({rows[0]['users']} users, paired bootstrap)")
    for column in ("metric", "baseline", "candidate", "ratio [95% CI]", "difference [95% CI]", "P(not better)"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["metric"], f"{r['a']:.4f}", f"{r['b']:.4f}",
            f"{r['ratio']:.3f}× [{r['ratio_low']:.3f}, {r['ratio_high']:.3f}]",
            f"{r['difference']:+.4f} [{r['difference_low']:+.4f}, {r['difference_high']:+.4f}]",
            f"{r['p_not_better']:.3f}",
        )  # fmt: skip
    out.print(table)


@cli.command("train")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), help=RUN_DIR_HELP + " New or empty, unless --resume."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out (after a kill, or after editing the pipeline).")
@click.option("--fresh", is_flag=True, help="Start over in --out (the old run is replaced once the new one starts).")
@click.option("--redo", type=click.Choice(STAGE_CHOICES[:-1]), help="Force this stage and every stage after it.")
@click.option(
    "--rerank", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help=RERANK_HELP
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary and metrics as JSON.")
def train_cmd(
    pipeline: Path,
    out_dir: Path | None,
    resume: bool,
    fresh: bool,
    redo: str | None,
    rerank: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train PIPELINE: its two-tower model (fuser + user tower), or its `model` section (a baseline).

    Early stopping and model selection use validation Recall@20; the selected model is then scored on
    validation and test (with `train.refit: true`, test by a model retrained on train + valid for the selected
    number of epochs, which is also the one saved). The run directory holds the resolved config, a manifest with
    package versions, seeds and artifact checksums, the per-epoch log, the checkpoint, the artifacts and
    metrics.json.
    """
    from fusionrec.core.api import Pipeline

    registry = get_registry()
    _warn_failed(registry)
    target = out_dir if out_dir is not None else Path("runs") / pipeline.stem
    printer = None if as_json else _RunPrinter(target, quiet_data=True)
    done = Pipeline.load(pipeline, registry).train(
        target, resume=resume or redo is not None, fresh=fresh, redo=redo, rerank=rerank,
        progress=not quiet and not as_json, console=err, on_event=printer,
    )  # fmt: skip
    if done.rank:
        return  # under torchrun, rank 0 wrote the run and prints its summary
    if as_json:
        out.print_json(json.dumps({"run": str(target), "summary": done.summary, "metrics": done.metrics}))
    elif not done.finished:
        out.print(f"stopped early: {target} (continue with --resume)", markup=False)


@cli.command("tune")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Trials the study holds when done (total).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Study folder (default runs/tune-<name>).")
@click.option("--timeout", type=click.FloatRange(min=0), help="Start no new trial after this many seconds.")
@click.option(
    "--metric", default="ndcg@20", show_default=True, help="Validation metric to maximise (recall@20 or ndcg@20 prune)."
)
@click.option("--default-space", is_flag=True, help="Search the default ranges (docs/tuning.md) if the file has none.")
@click.option(
    "--rerank", type=click.Choice(["auto", "always", "never"]), default="never", show_default=True, help=RERANK_HELP
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
def tune_cmd(
    pipeline: Path,
    trials: int,
    out_dir: Path | None,
    timeout: float | None,
    metric: str,
    default_space: bool,
    rerank: str,
    seed: int,
) -> None:
    """Search PIPELINE's ranges (`lr: {tune: log_uniform, low: 1e-4, high: 1e-2}`) with Optuna, on validation only.

    Each trial trains the pipeline into OUT/trials/NNNN; trials are pruned on the per-epoch validation metric. The
    study is stored in OUT/study.db: run the command again (with a larger --trials) to continue it. Writes
    OUT/best.yaml (the best trial's pipeline, ready to run), OUT/trials.csv, OUT/trials.md and OUT/trials.png.
    """
    from fusionrec.core.api.tune import tune

    registry = get_registry()
    _warn_failed(registry)
    target = out_dir if out_dir is not None else Path("runs") / f"tune-{pipeline.stem}"

    def tell(row: dict[str, Any]) -> None:
        value = row.get(f"valid {metric}")
        shown = f"{value:.4f}" if isinstance(value, float) else "-"
        out.print(f"trial {row['trial']}: {row['state'].lower()}, valid {metric} {shown} {row['note']}", markup=False)

    result = tune(
        pipeline, target, trials=trials, metric=metric, timeout=timeout, default_space=default_space,
        rerank=rerank, seed=seed, registry=registry, on_trial=tell,
    )  # fmt: skip
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    out.print(f"study {target}: {sum(result.counts.values())} trials ({counts})", markup=False)
    if result.best is None:
        out.print("no trial completed: no best.yaml (see trials.md)", markup=False)
        return
    out.print(f"best: trial {result.best['trial']}, valid {metric} {result.best['value']:.4f}", markup=False)
    for name, value in result.best["params"].items():
        out.print(f"  {name}: {value!r}", markup=False)
    out.print(f"wrote {result.best_yaml}, {target / 'trials.csv'}, {target / 'trials.md'}, {target / 'trials.png'}")


class _RunPrinter:
    """Prints what each stage of a run found, as the API reports it (``on_event``)."""

    def __init__(self, target: Path, *, quiet_data: bool = False) -> None:
        self.target = target
        self.quiet_data = quiet_data

    def __call__(self, name: str, facts: dict[str, Any]) -> None:
        getattr(self, f"on_{name}", lambda facts: None)(facts)

    def on_config(self, facts: dict[str, Any]) -> None:
        out.print(f"[bold]config[/bold]: the pipeline differs from the run in {self.target}:")
        for line in facts["diff"]:
            out.print(f"  {line}", markup=False)
        out.print("  stages whose inputs changed are redone; the rest is reused", markup=False)

    def on_data(self, facts: dict[str, Any]) -> None:
        if not self.quiet_data:
            out.print("[bold]data[/bold]")
            for line in facts["lines"]:
                out.print(f"  {line}", markup=False)

    def on_features(self, facts: dict[str, Any]) -> None:
        if not self.quiet_data:
            for line in facts["lines"]:
                out.print(line, markup=False)

    def on_train(self, facts: dict[str, Any]) -> None:
        summary = facts["summary"]
        state = "reused (already trained)" if facts.get("reused") else summary.get("stopped", "trained")
        out.print(f"[bold]train[/bold] → {self.target}: {state}")
        if facts.get("refit"):
            out.print(facts["refit"], markup=False)

    def on_evaluate(self, facts: dict[str, Any]) -> None:
        _print_metrics(facts["metrics"], "metrics")

    def on_report(self, facts: dict[str, Any]) -> None:
        for user, rows in facts["samples"].items():
            _print_recommendations(f"user {user}: top 10", rows)
        out.print(f"report: {facts['report']} (chart {facts['chart']})", markup=False)


def _print_stages(title: str, rows: list[Any]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("stage", "component", "from plugin", "status"):
        table.add_column(column, overflow="fold")
    for stage in rows:
        table.add_row(stage.name, stage.component, stage.plugin, stage.status)
    out.print(table)


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    """The served path's metrics (valid and test) and, when it differs, the exact path's beside them."""
    from fusionrec.core.api import metric_notes, metric_table

    table = Table(title=title, title_justify="left")
    for column in ("metric", "path", "valid [95% CI]", "test [95% CI]"):
        table.add_column(column)
    for row in metric_table(metrics):
        table.add_row(*row)
    out.print(table)
    protocol = metrics.get("test", {}).get("protocol")
    if protocol:
        out.print("protocol: " + ", ".join(f"{k} {v}" for k, v in protocol.items()), markup=False)
    for line in metric_notes(metrics):
        out.print(line, markup=False)


@cli.command("recommend")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--user", "user_ids", multiple=True, help="A user id as in the data (repeatable).")
@click.option("--users", "all_users", type=click.Choice(["all"]), help="Every user (with --out).")
@click.option("--similar", "similar", help="Instead of users: items similar to this item id.")
@click.option("--history", "history", help="Instead of users: a session's item ids, comma-separated, newest last.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Recommendations per user.")
@click.option(
    "--rerank", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help=RERANK_HELP
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path),
    help="Write userId,itemId,rank (original ids, seen items excluded) to this CSV file instead of printing.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.Choice(["valid", "test"]),
    help="The lists evaluation scored for this part: history and exclusions up to it (train; train + valid).",
)
@click.option("--exact", is_flag=True, help="With --as-of: exact search instead of the retriever (the exact row).")
def recommend_cmd(
    run_dir: Path,
    user_ids: tuple[str, ...],
    all_users: str | None,
    similar: str | None,
    history: str | None,
    k: int,
    rerank: str,
    as_json: bool,
    out_file: Path | None,
    as_of: str | None,
    exact: bool,
) -> None:
    """Recommend items from a trained run: retrieve, rerank, explain (scores and per-modality weights).

    Without --as-of a user's history is every interaction in the data, and all of it is excluded. With
    --as-of test (or valid) the lists are the ones evaluation scored: score them against the split's test.csv
    (`fusionrec data split`) to re-check metrics.json (docs/evaluation.md).
    """
    from fusionrec.core.api import Run

    if not user_ids and not all_users and similar is None and history is None:
        raise click.UsageError("give --user ID (repeatable), --users all, --similar ITEM_ID or --history IDS")
    if (as_of is not None or exact) and (similar is not None or history is not None):
        raise click.UsageError("--as-of and --exact apply to users' lists, not to --similar or --history")
    if exact and as_of is None:
        raise click.UsageError("--exact needs --as-of test (or valid): it re-creates the exact row of the metrics")
    registry = get_registry()
    _warn_failed(registry)
    opened = Run.open(run_dir, registry, rerank=rerank)
    n_items = opened.recommender.data.n_items
    if k > n_items:
        err.print(f"note: k={k} is larger than the catalogue ({n_items:,} items); showing at most {n_items:,}")
    if not as_json and out_file is None:
        out.print(f"path: {opened.path_description}", markup=False)
    if similar is not None or history is not None:
        if similar is not None:
            title, rows = f"items similar to {similar}", opened.similar(similar, k)
        else:
            items = [i.strip() for i in (history or "").split(",") if i.strip()]
            title, rows = f"after {', '.join(items)}: top {k}", opened.recommend_history(items, k)
        if as_json:
            out.print_json(json.dumps({"query": similar or history, "items": [r.to_dict() for r in rows]}))
        else:
            _print_recommendations(title, rows)
        return
    users = [str(u) for u in opened.recommender.data.user_ids] if all_users else list(user_ids)
    if out_file is not None:
        opened.write_recommendations(users, k, out_file, as_of=as_of, exact=exact)
        cut = f" as of {as_of}{' (exact search)' if exact else ''}" if as_of else ""
        out.print(f"wrote {len(users):,} users × up to {k} items{cut} to {out_file}", markup=False)
        return
    results = opened.recommend_as_of(as_of, users, k, exact) if as_of else opened.recommend(users, k)
    if as_json:
        payload = [{"user_id": u, "items": [r.to_dict() for r in rows]} for u, rows in zip(users, results, strict=True)]
        out.print_json(json.dumps(payload))
        return
    for user, rows in zip(users, results, strict=True):
        _print_recommendations(f"user {user}: top {k}", rows)


def _print_recommendations(title: str, rows: list[Any]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("#", "item", "title", "score", "retrieval", "ranker", "modality weights", "image"):
        table.add_column(column, overflow="fold")
    for r in rows:
        weights = " · ".join(f"{m} {w:.2f}" for m, w in r.weights.items())
        table.add_row(
            str(r.rank),
            str(r.item_id),
            r.title,
            f"{r.score:.4f}",
            "-" if r.retrieval_score is None else f"{r.retrieval_score:.4f}",
            "-" if r.ranker_score is None else f"{r.ranker_score:.4f}",
            weights or "-",
            r.image or "-",
        )
    out.print(table)


@cli.command("serve")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--admin-token",
    envvar="FUSIONREC_ADMIN_TOKEN",
    help="Turns on POST /admin/reload for clients sending it as a Bearer token (also FUSIONREC_ADMIN_TOKEN).",
)
@click.option(
    "--rerank", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help=RERANK_HELP
)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="torch/FAISS threads per request."
)
def serve_cmd(run_dir: Path, host: str, port: int, admin_token: str | None, rerank: str, threads: int) -> None:
    """Serve a finished run over HTTP: an API (/docs), a page at /, /metrics; reload with SIGHUP or /admin/reload."""
    from fusionrec.core.serve import run_server

    registry = get_registry()
    _warn_failed(registry)
    err.print(f"opening {run_dir} (every artifact checked) for http://{host}:{port}/ (API: /docs)", markup=False)
    run_server(run_dir, host=host, port=port, admin_token=admin_token or None, rerank=rerank, threads=threads,
               registry=registry)  # fmt: skip


@cli.command("features")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one report per modality).")
@click.option(
    "--shard",
    metavar="I/N",
    help="Encode only shard I of N (the items at positions p with p % N == I) into the shared cache; run the N "
    "shards at once, in any processes or machines that share the cache folder. Under torchrun, RANK/WORLD_SIZE "
    "give it. [default: every item]",
)
def features_cmd(pipeline: Path, quiet: bool, as_json: bool, shard: str | None) -> None:
    """Compute the features of PIPELINE's frozen encoders into the feature cache; print counts and items/s.

    Only items not already cached (same encoder fingerprint, same content) are encoded: a second run encodes
    nothing. Trainable encoders are skipped: training computes their vectors. With --shard I/N (or under
    torchrun) only one shard of the items is encoded; shards write the cache safely at the same time.
    """
    from fusionrec.core.engine import features as fe
    from fusionrec.core.engine.feature_shards import resolve_shard

    chosen = resolve_shard(shard)
    registry = get_registry()
    _warn_failed(registry)
    computed = fe.run_features(pipeline, registry, progress=not quiet, console=err, shard=chosen)
    if as_json:
        out.print_json(json.dumps({"pipeline": str(pipeline), **computed.to_dict()}))
        return
    for line in fe.summary_lines(computed):
        out.print(line, markup=False)


@cli.group("data")
def data_cmd() -> None:
    """Inspect, split and fetch datasets."""


@data_cmd.command("info")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the figures and the data report).")
@click.option("--report", type=click.Path(path_type=Path), help="Also write the data report to this JSON file.")
def data_info(pipeline: Path, as_json: bool, report: Path | None) -> None:
    """Load the data section of PIPELINE and show its figures and data report."""
    from fusionrec.core.assembly import loading as dc

    registry = get_registry()
    _warn_failed(registry)
    loaded = dc.load(pipeline, registry)
    figures = dc.describe(loaded)
    if report is not None:
        dc.write_report(loaded.data.report, report)
    if as_json:
        out.print_json(json.dumps(figures))
        return
    table = Table(title=f"data of {pipeline}", title_justify="left", show_header=False)
    for key, value in dc.info_rows(figures):
        table.add_row(escape(key), escape(value))
    out.print(table)
    for line in dc.report_lines(loaded.data.report):
        out.print(line, markup=False)
    if report is not None:
        out.print(f"data report written to {report}", markup=False)


@data_cmd.command("split")
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write into.")
@click.option("--report", type=click.Path(path_type=Path), help="Also write the data report to this JSON file.")
def data_split(pipeline: Path, out_dir: Path, report: Path | None) -> None:
    """Split the data of PIPELINE with its configured protocol; write train/valid/test CSVs in original ids."""
    from fusionrec.core.assembly import loading as dc

    registry = get_registry()
    _warn_failed(registry)
    loaded = dc.load(pipeline, registry)
    for line in dc.report_lines(loaded.data.report):
        out.print(line, markup=False)
    if report is not None:
        dc.write_report(loaded.data.report, report)
    manifest = dc.write_split(loaded, dc.run_split(loaded), out_dir, pipeline)
    for line in dc.split_lines(manifest, out_dir):
        out.print(line, markup=False)


@data_cmd.command("fetch")
@click.argument("name")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to create for the dataset; it must not exist or be empty.",
)
@click.option("--url", help="Download from here instead: a mirror, a local server, a file:// URL.")
@click.option("--sha256", help="Expect this sha256 instead of the known one (another build of the archive).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def data_fetch(name: str, dest: Path, url: str | None, sha256: str | None, quiet: bool) -> None:
    """Download the public dataset NAME (movielens-small), check its sha256 and extract it into DEST.

    An interrupted download resumes when run again; DEST either gets the complete dataset or nothing.
    """
    import re

    from fusionrec.core.engine.fetch import fetch

    result = fetch(name, dest, url=url, sha256=sha256, progress=not quiet, console=err)
    dataset, where = result.dataset, str(result.dest)
    if result.already_present:
        out.print(f"{where} already holds {dataset.name}: nothing downloaded (remove it to fetch again).", markup=False)
    else:
        resumed = f", resuming after {result.resumed_from:,}" if result.resumed_from else ""
        out.print(
            f"{dataset.name}: downloaded {result.downloaded:,} bytes{resumed} from {dataset.url}, sha256 verified, "
            f"extracted {len(result.files)} files into {where}",
            markup=False,
        )
    if dataset.note:
        out.print(dataset.note, markup=False)
    yaml_path = where if re.fullmatch(r"[\w./~-]+", where) else json.dumps(where)
    out.print("Use it in a pipeline file:", markup=False)
    extra = f", {dataset.dataset_params}" if dataset.dataset_params else ""
    out.print(f"  data: {{type: {dataset.dataset_type}, path: {yaml_path}{extra}}}", markup=False)
    if dataset.licence:
        out.print(dataset.licence, markup=False)


@cli.group("bench")
def bench_cmd() -> None:
    """Benchmarks that write their figures (JSON, a Markdown table, a plot) into a folder."""


@bench_cmd.command("retrieval")
@click.option(
    "--sizes",
    metavar="N,N,…",
    help="Synthetic data sets: item counts, comma-separated (10k, 1M work too); 'none' for none. "
    "[default: 10000,100000,1000000; 2000 with --quick]",
)
@click.option("--dim", type=click.IntRange(min=2), default=128, show_default=True, help="Synthetic vector size.")
@click.option(
    "--vectors",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Real item vectors, .npy (n, dim): a run's item vectors, a feature-cache store's vectors.npy.",
)
@click.option("--vectors-name", help="Name of the --vectors data set in the tables (default: the file's stem).")
@click.option(
    "--queries",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Query vectors for --vectors, .npy (default: 1024 seeded item rows plus Gaussian noise).",
)
@click.option(
    "--index",
    "indexes",
    multiple=True,
    metavar="FACTORY[|SEARCH]",
    help="A FAISS index_factory string (verbatim) and search parameters after '|': 'HNSW32|efSearch=64', "
    "'IVF4096,Flat|nprobe=16'; or a Milvus index: 'milvus:HNSW:M=32,efConstruction=40|ef=64', "
    "'milvus:IVF_FLAT:nlist=1024|nprobe=16', 'milvus:FLAT'. Repeatable; one factory string is built once. "
    "Default: Flat, HNSW32 (efSearch 32, 128), IVF≈4·√n,Flat (nprobe 8, 32, 128), IVF≈4·√n,PQ(dim/4)np (nprobe 32).",
)
@click.option(
    "--retriever",
    "retrievers",
    multiple=True,
    type=click.Choice(["faiss", "milvus"]),
    help="Measure this retriever's default configurations (repeatable): faiss (unless --index is given), milvus "
    "(FLAT, HNSW ef 32/128, IVF_FLAT nprobe 8/32/128, each beside its FAISS twin; needs the milvus extra). "
    "[default: faiss]",
)
@click.option("--milvus-uri", help="A Milvus server for the milvus retriever (default: embedded Milvus Lite).")
@click.option("--metric", type=click.Choice(["ip", "l2"]), default="ip", show_default=True, help="Similarity.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Search on.")
@click.option("--threads", type=click.IntRange(min=1), help="FAISS threads (default: FAISS's, one per core).")
@click.option("--repeats", type=click.IntRange(min=1), help="Timed repetitions per side (default 5; 3 with --quick).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data, queries and seen items.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("docs/benchmarks"),
    show_default=True,
    help="Folder for retrieval.json, retrieval.md and retrieval.png.",
)
@click.option("--quick", is_flag=True, help="A small run (2,000 items, 256 queries, 3 repetitions), for tests.")
@click.option("--quiet", "-q", is_flag=True, help="No progress; print only the files written.")
def bench_retrieval(
    sizes: str | None,
    dim: int,
    vectors: Path | None,
    vectors_name: str | None,
    queries: Path | None,
    indexes: tuple[str, ...],
    retrievers: tuple[str, ...],
    milvus_uri: str | None,
    metric: str,
    device: str,
    threads: int | None,
    repeats: int | None,
    seed: int,
    out_dir: Path,
    quick: bool,
    quiet: bool,
) -> None:
    """FAISS indexes through fusionrec's faiss retriever: build time, memory, recall@10, QPS at batch 1 and 1024
    against raw FAISS on the same index, and seen-item exclusion (over-fetch against an IDSelector); Milvus
    indexes (--index milvus:…, --retriever milvus) against their FAISS twins. See docs/benchmarks.md."""
    from fusionrec.core.bench import retrieval as br
    from fusionrec.core.bench import retrieval_report as report

    options = br.make_options(
        sizes=sizes,
        dim=dim,
        vectors=vectors,
        vectors_name=vectors_name,
        queries=queries,
        indexes=indexes,
        retrievers=retrievers,
        milvus_uri=milvus_uri,
        metric=metric,
        device=device,
        threads=threads,
        repeats=repeats,
        seed=seed,
        quick=quick,
    )
    registry = get_registry()
    _warn_failed(registry)
    with report.progress_display(err, not quiet) as progress:
        result = br.run_benchmark(registry, options, progress, command=report.command_line(options, out_dir))
    for path in report.write_outputs(result, out_dir):
        out.print(f"wrote {path}", markup=False)
    if not quiet:
        for line in report.summary_lines(result):
            out.print(line, markup=False)


def _warn_failed(registry: Registry) -> None:
    for record in registry.plugins.values():
        if record.error is not None:
            err.print(
                f"warning: plugin {record.origin} failed to load and is skipped: {record.error}",
                markup=False,
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fusionrec`` script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FUSIONREC_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=args, prog_name="fusionrec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return EXIT_USER_ERROR if exc.exit_code == 2 else exc.exit_code
    except FusionrecError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc}\nThis is a bug in fusionrec or a plugin; rerun with "
            "--debug for the traceback and report it.",
            markup=False,
        )
        return EXIT_BUG
    return 0
