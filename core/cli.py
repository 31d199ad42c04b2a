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

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusionrec.core.errors import FusionrecError
from fusionrec.registry import Registry, get_registry

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
    from fusionrec.registry.describe import describe_params

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
        out.print(f"[bold]{info.kind} '{escape(info.name)}'[/bold]  from plugin {escape(info.origin)}")
        if info.summary:
            out.print(info.summary, markup=False)
        params = describe_params(info.params)
        if not params:
            out.print("  (no parameters)\n")
            continue
        table = Table(show_edge=False, pad_edge=False)
        for column in ("parameter", "type", "default", "constraints", "description"):
            table.add_column(column, overflow="fold")
        for p in params:
            default = "[bold](required)[/bold]" if p.required else escape(p.default or "")
            table.add_row(
                *(escape(text) for text in (p.name, p.type)), default, escape(p.constraints), escape(p.description)
            )
        out.print(table)
        out.print()


@cli.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--resolved", is_flag=True, help="Print the pipeline with every default filled in.")
def validate(pipeline: Path, resolved: bool) -> None:
    """Check a pipeline file: sections, component names, parameters."""
    from fusionrec.core.config import dumps_pipeline, load_pipeline

    registry = get_registry()
    _warn_failed(registry)
    spec = load_pipeline(pipeline, registry)
    if resolved:
        out.print(dumps_pipeline(spec), end="", markup=False)
        return
    names = ", ".join(f"{where}={s.type}" for where, s in spec.components()) or "no components"
    out.print(f"{pipeline}: valid ({names})")


@cli.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
def run(pipeline: Path) -> None:
    """Run a pipeline: data → features → train → index → rerank → evaluate."""
    from fusionrec.core.config import load_pipeline
    from fusionrec.core.pipeline import plan

    registry = get_registry()
    _warn_failed(registry)
    spec = load_pipeline(pipeline, registry)
    stages = plan(spec, registry)
    table = Table(title=f"pipeline {pipeline}", title_justify="left")
    for column in ("stage", "component", "from plugin", "status"):
        table.add_column(column, overflow="fold")
    for stage in stages:
        table.add_row(stage.name, stage.component, stage.plugin, stage.status)
    out.print(table)
    pending = [s.name for s in stages if s.configured and not s.ready]
    if pending:
        out.print(
            f"Validated. Stages not available in fusionrec {_version()} yet: {', '.join(pending)}; "
            "nothing was trained or written."
        )


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


if __name__ == "__main__":
    sys.exit(main())
