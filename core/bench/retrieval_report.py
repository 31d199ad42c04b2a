"""What ``fusionrec bench retrieval`` writes and shows: machine facts, target checks, JSON, Markdown, the plot.

The figures come from :func:`fusionrec.core.bench.retrieval.run_benchmark`; this module only renders them:
``retrieval.json`` (every raw figure and timing, the machine, the date), ``retrieval.md`` (tables per data set) and
``retrieval.png`` (recall@10 against QPS, log scale, per data set), all written atomically into the out folder.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fusionrec.core.bench.retrieval_milvus as retrieval_milvus
from fusionrec.core.io import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from rich.console import Console

    from fusionrec.core.bench.retrieval import BenchOptions, Progress

WRAPPER_TARGET = 0.95
ANN_RECALL, ANN_SPEEDUP, ANN_ITEMS = 0.95, 10.0, 1_000_000
MODES = {"batch1": "batch 1", "batch": "large batch (1024)"}
FILES = ("retrieval.json", "retrieval.md", "retrieval.png")


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, memory, library versions, faiss's build options and GPU count, the date."""
    import numpy as np

    from fusionrec.core.bench.retrieval_data import faiss_module

    faiss = faiss_module()

    cpu: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in cpu:
                cpu[key] = value.strip()
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    info: dict[str, Any] = {
        "cpu": cpu.get("model name") or platform.processor() or "unknown",
        "cpu_family_model": f"{cpu.get('cpu family', '?')}/{cpu.get('model', '?')}",
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "faiss": faiss.__version__,
        "faiss_build": faiss.get_compile_options().strip(),
        "faiss_gpus": faiss.get_num_gpus(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if device != "cpu":
        info["gpu"] = _gpu_name()
    return info


def _gpu_name() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Check the issue's targets on the figures: the wrapper's QPS ratio, and fast accurate ANN on 1M items."""
    ratios = [
        {"dataset": data["name"], "index": entry["label"], "mode": mode, "ratio": entry[mode]["ratio"]}
        for data in result["datasets"]
        for entry in data["results"]
        if "error" not in entry
        for mode in MODES
    ]
    wrapper: dict[str, Any] = {"target": WRAPPER_TARGET, "measurements": len(ratios)}
    if ratios:
        below = [r for r in ratios if r["ratio"] < WRAPPER_TARGET]
        wrapper |= {
            "met": len(ratios) - len(below),
            "holds": not below,
            "median": statistics.median(r["ratio"] for r in ratios),
            "lowest": min(ratios, key=lambda r: r["ratio"]),
            "below": below,
        }
    synthetic = [d for d in result["datasets"] if d["source"].get("kind") == "synthetic"]
    return {
        "wrapper_qps_ratio": wrapper,
        "prepared_qps_ratio": prepared_targets(result),
        "ann_1m": ann_target(synthetic, result["settings"]["device"]),
    }


def prepared_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The engine's path (``search_prepared``): the median ratio to raw FAISS over the configurations, per mode."""
    checked: dict[str, Any] = {"target": WRAPPER_TARGET}
    for mode in MODES:
        ratios = [
            entry[f"{mode}_prepared"]["ratio"]
            for data in result["datasets"]
            for entry in data["results"]
            if f"{mode}_prepared" in entry
        ]
        if ratios:
            median = statistics.median(ratios)
            checked[mode] = {
                "measurements": len(ratios),
                "median": median,
                "lowest": min(ratios),
                "met": sum(r >= WRAPPER_TARGET for r in ratios),
                "holds": median >= WRAPPER_TARGET,
            }
    return checked


def ann_target(synthetic: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """Fast accurate ANN on the largest synthetic set: recall@10 ≥ 0.95 at ≥ 10× the Flat index's QPS."""
    ann: dict[str, Any] = {
        "target": f"recall@10 ≥ {ANN_RECALL} at ≥ {ANN_SPEEDUP:g}× the QPS of exact search (Flat), CPU, 1M items"
    }
    if synthetic:
        largest = max(synthetic, key=lambda d: d["n"])
        ann |= {"dataset": largest["name"], "n": largest["n"], "device": device}
        ann["applies"] = largest["n"] >= ANN_ITEMS and device == "cpu"
        usable = [e for e in largest["results"] if "error" not in e and e["index"] != "Flat" and "speedup_vs_flat" in e]
        for mode in MODES:
            accurate = [e for e in usable if e["recall_at_10"] >= ANN_RECALL]
            best = max(accurate, key=lambda e: e["speedup_vs_flat"][mode], default=None)
            ann[mode] = {
                "holds": best is not None and best["speedup_vs_flat"][mode] >= ANN_SPEEDUP,
                "best": None
                if best is None
                else {
                    "index": best["label"],
                    "recall_at_10": best["recall_at_10"],
                    "qps": best[mode]["fusionrec_qps"],
                    "speedup_vs_flat": best["speedup_vs_flat"][mode],
                },
            }
    return ann


def command_line(options: BenchOptions, out: Path) -> str:
    """The command that reproduces a run (every option that differs from its default)."""
    from fusionrec.core.bench.retrieval import DEFAULT_SIZES, QUICK_SIZES

    args = ["fusionrec", "bench", "retrieval"]
    if options.quick:
        args.append("--quick")
    if options.sizes != (QUICK_SIZES if options.quick else DEFAULT_SIZES):
        args += ["--sizes", ",".join(map(str, options.sizes)) or "none"]
    if options.dim != 128:
        args += ["--dim", str(options.dim)]
    for flag, path in (("--vectors", options.vectors), ("--queries", options.queries)):
        if path is not None:
            args += [flag, str(path)]
    if options.vectors_name:
        args += ["--vectors-name", options.vectors_name]
    for choice in (*options.indexes, *options.milvus):
        args += ["--index", choice.label]
    for retriever in options.retrievers if options.retrievers != ("faiss",) else ():
        args += ["--retriever", retriever]
    if options.milvus_uri:
        args += ["--milvus-uri", options.milvus_uri]
    settings: tuple[tuple[str, object, object], ...] = (
        ("--metric", options.metric, "ip"),
        ("--device", options.device, "cpu"),
        ("--threads", options.threads, None),
        ("--repeats", options.repeats, 3 if options.quick else 5),
        ("--seed", options.seed, 0),
    )
    for flag, value, default in settings:
        if value != default:
            args += [flag, str(value)]
    args += ["--out", str(out)]
    return shlex.join(args)


# --- files --------------------------------------------------------------------------------------------------------


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Write retrieval.json, retrieval.md and (with matplotlib) retrieval.png into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plotted = plot(result, out / FILES[2])
    atomic_write_text(out / FILES[0], json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    written.append(out / FILES[0])
    atomic_write_text(out / FILES[1], render_markdown(result, with_plot=plotted))
    written.append(out / FILES[1])
    if plotted:
        written.append(out / FILES[2])
    return written


def plot(result: dict[str, Any], path: Path) -> bool:
    """Recall@10 against QPS (log scale) for each data set; False (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sets = result["datasets"]
    columns = min(2, len(sets))
    rows = (len(sets) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.8 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, data in zip(axes.flat, sets, strict=False):
        factories = list(dict.fromkeys(e["index"] for e in data["results"] if "error" not in e))
        for number, factory in enumerate(factories):
            entries = sorted(
                (e for e in data["results"] if e["index"] == factory and "error" not in e),
                key=lambda e: e["recall_at_10"],
            )
            colour = colours[number % len(colours)]
            recalls = [e["recall_at_10"] for e in entries]
            axis.plot(recalls, [e["batch"]["fusionrec_qps"] for e in entries], "o-", color=colour, label=factory)
            axis.plot(recalls, [e["batch1"]["fusionrec_qps"] for e in entries], "s--", color=colour, mfc="none")
        axis.set_yscale("log")
        axis.set_xlabel("recall@10 (against exact search)")
        axis.set_ylabel("queries per second (log)")
        axis.set_title(data["name"])
        axis.grid(True, which="both", alpha=0.3)
        batch = entries[0]["batch"]["size"] if factories else result["settings"]["batch_size"]
        if factories:  # a run of Milvus indexes only has no FAISS rows to plot
            axis.legend(fontsize="small", title=f"solid: batch {batch}, dashed: batch 1", title_fontsize="small")
    for axis in list(axes.flat)[len(sets) :]:
        axis.set_visible(False)
    settings = result["settings"]
    figure.suptitle(
        f"fusionrec faiss retriever, {settings['metric']}, {settings['device']}, {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores, {settings['threads']} FAISS threads), faiss "
        f"{result['machine']['faiss']}, {result['machine']['date']}",
        fontsize="medium",
    )
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return True


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.1f}"


def _qps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render_markdown(result: dict[str, Any], with_plot: bool = True) -> str:
    """The tables of ``retrieval.md``: one per data set, then seen-item exclusion, then the targets."""
    machine, settings = result["machine"], result["settings"]
    lines = [
        "# Retrieval benchmark",
        "",
        "Written by `fusionrec bench retrieval`; every figure, with each repetition's time, is in `retrieval.json`.",
        "",
        "```",
        result.get("command", "fusionrec bench retrieval"),
        "```",
        "",
        f"Machine: {machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores, "
        f"{_mb(machine['memory_bytes'])} MB; faiss {machine['faiss']} ({machine['faiss_build']}), "
        f"threads: {settings['threads']}; numpy {machine['numpy']}, Python {machine['python']}. "
        f"Date: {machine['date']}; {result['seconds'] / 60:.1f} minutes; 1-minute load average "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_1min'])} (at the start and after each data set).",
        "",
        f"Metric `{settings['metric']}`, device `{settings['device']}`, k = {settings['k']}. Queries per second (q/s) "
        f"are fusionrec's, from the median of {settings['repeats']} rounds (3 for batch calls over 2 s) in which raw "
        "FAISS and fusionrec's retriever take turns on the same index object and queries (at batch 1, query by "
        "query); ×raw = fusionrec q/s ÷ raw FAISS q/s; ×Flat = q/s ÷ the Flat index's q/s. Batch 1 runs 20–300 "
        "queries per round, as many as take about a second.",
        "",
    ]
    if with_plot:
        lines += ["![recall@10 against queries per second](retrieval.png)", ""]
    for data in result["datasets"]:
        batch = next((e["batch"]["size"] for e in data["results"] if "batch" in e), settings["batch_size"])
        lines += [
            f"## {data['name']}",
            "",
            f"{data['queries']:,} queries; exact search of all of them (raw FAISS Flat) took "
            f"{data['exact_search_s']:.1f} s. Source: {_source(data['source'])}.",
        ]
        lines += _result_rows(data, batch)
        if data["exclusion"]:
            lines += [
                "",
                "Seen-item exclusion (users/s and recall@10 against exact search with the same exclusion):",
                "",
                "| index | search | users | excluded per user | over-fetch, batched | over-fetch, 1 user per call "
                "| IDSelector, 1 user per call | faster per user |",
                "|---|---|---:|---|---:|---:|---:|---|",
            ]
            for x in data["exclusion"]:
                m = x["methods"]
                cells = [
                    f"{_qps(m[name]['qps'])} ({m[name]['recall_at_10']:.3f})" if name in m else "–"
                    for name in ("overfetch_batched", "overfetch_per_user", "idselector_per_user")
                ]
                size = x["excluded_per_user"]
                faster = x.get("faster_per_user") or f"IDSelector failed: {x['idselector_error']}"
                if "speed_ratio_overfetch_to_idselector" in x:
                    ratio = x["speed_ratio_overfetch_to_idselector"]
                    faster += f", {max(ratio, 1 / ratio):.1f}×"
                lines.append(
                    f"| `{x['index']}` | {x['search'] or '–'} | {x['users']} | {size['min']}–{size['max']} "
                    f"(mean {size['mean']:.0f}) | {' | '.join(cells)} | {faster} |"
                )
        lines += retrieval_milvus.render(data.get("milvus", []))
        lines.append("")
    lines += _target_lines(result["targets"])
    return "\n".join(lines) + "\n"


def _result_rows(data: dict[str, Any], batch: int) -> list[str]:
    """The FAISS rows of one data set's table (none when only Milvus indexes were asked for)."""
    lines: list[str] = []
    if data["results"]:
        lines += [
            "",
            "| index | search | build s | index MB | RSS Δ MB | recall@10 | batch 1 q/s | ×raw | "
            f"batch {batch} q/s | ×raw | prepared ×raw (1 / {batch}) | ×Flat (batch 1 / {batch}) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for e in data["results"]:
        if "error" in e:
            lines.append(f"| `{e['index']}` | {e['search'] or '–'} | {e['error']} |||||||||")
            continue
        flat = e.get("speedup_vs_flat")
        speedup = f"{flat['batch1']:,.1f} / {flat['batch']:,.1f}" if flat else "–"
        prepared = (
            f"{e['batch1_prepared']['ratio']:.3f} / {e['batch_prepared']['ratio']:.3f}"
            if "batch1_prepared" in e
            else "–"
        )
        lines.append(
            f"| `{e['index']}` | {e['search'] or '–'} | {e['build_s']:.1f} | {_mb(e['serialized_bytes'])} | "
            f"{_mb(e['rss_delta_bytes'])} | {e['recall_at_10']:.3f} | {_qps(e['batch1']['fusionrec_qps'])} | "
            f"{e['batch1']['ratio']:.3f} | {_qps(e['batch']['fusionrec_qps'])} | {e['batch']['ratio']:.3f} | "
            f"{prepared} | {speedup} |"
        )
    return lines


def _source(source: dict[str, Any]) -> str:
    if source.get("kind") == "synthetic":
        return f"synthetic, {source['law']}, {source['centres']:,} centres, seed {source['seed']}"
    return f"`{source['path']}`; queries: {source['queries']}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The target checks, one line each, for the terminal."""
    return [line for line in _target_lines(result["targets"])[2:] if line]


def _target_lines(checked: dict[str, Any]) -> list[str]:
    lines = ["## Targets", ""]
    wrapper = checked["wrapper_qps_ratio"]
    if wrapper["measurements"]:
        low = wrapper["lowest"]
        lines.append(
            f"- fusionrec ≥ {wrapper['target']}× raw FAISS QPS: {'holds' if wrapper['holds'] else 'does not hold'} "
            f"({wrapper['met']} of {wrapper['measurements']} measurements; median {wrapper['median']:.3f}; lowest "
            f"{low['ratio']:.3f}, {low['index']} at {MODES[low['mode']]} on {low['dataset']})."
        )
    prepared = checked.get("prepared_qps_ratio", {})
    for mode, label in MODES.items():
        if mode in prepared:
            x = prepared[mode]
            lines.append(
                f"- search_prepared (the engine's path) ≥ {prepared['target']}× raw FAISS QPS at {label}, median over "
                f"configurations: {'holds' if x['holds'] else 'does not hold'} (median {x['median']:.3f}; "
                f"{x['met']} of {x['measurements']} at or above; lowest {x['lowest']:.3f})."
            )
    ann = checked["ann_1m"]
    if "dataset" in ann:
        scope = "" if ann["applies"] else " (not a CPU run on 1M items: indicative only)"
        for mode, label in MODES.items():
            best = ann[mode]["best"]
            found = (
                "no index reached the recall"
                if best is None
                else f"best {best['index']}: recall@10 {best['recall_at_10']:.3f}, {best['speedup_vs_flat']:,.1f}× Flat"
            )
            lines.append(
                f"- {ann['target']}, {label}, on {ann['dataset']}{scope}: "
                f"{'holds' if ann[mode]['holds'] else 'does not hold'} ({found})."
            )
    return [*lines, ""]


# --- terminal -----------------------------------------------------------------------------------------------------


class _Lines:
    """Progress as plain lines (piped output): the notes only."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def start(self, steps: int) -> None:
        pass

    def step(self, description: str) -> None:
        pass

    def advance(self) -> None:
        pass

    def note(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)


@contextmanager
def progress_display(console: Console, enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar with the notes printed above it on a terminal; plain note lines otherwise; or nothing."""
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        yield _Lines(console)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as display:
        task = display.add_task("starting", total=None)

        class Bar:
            def start(self, steps: int) -> None:
                display.update(task, total=steps)

            def step(self, description: str) -> None:
                display.update(task, description=description)

            def advance(self) -> None:
                display.advance(task)

            def note(self, line: str) -> None:
                display.console.print(line, markup=False, highlight=False)

        yield Bar()
