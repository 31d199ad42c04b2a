"""The run report: what a user opens first after ``fusionrec run`` — metrics with their protocol, the reranking
verdict, timings, the per-epoch log, sample recommendations with their posters' file names, a chart and the config.

Written into the run directory as ``report.md`` and ``report.png`` (matplotlib, Agg backend), atomically.
"""

from __future__ import annotations

import io
import json
from typing import Any

from fusionrec.core.engine.recommend import Recommendation
from fusionrec.core.engine.rundir import CONFIG, RunDir
from fusionrec.core.engine.weights_plot import modality_weight_histogram, weight_summary

REPORT = "report.md"
CHART = "report.png"
WEIGHTS_CHART = "weights.png"


def chart(metrics: dict[str, Any]) -> bytes:
    """Grouped bars of every metric on validation and test (with the 95% intervals as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("valid", "test") if p in metrics]
    names = [n for n in metrics[parts[0]]["metrics"] if not n.startswith("coverage")] if parts else []
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names)), 3.6), dpi=120)
    width = 0.8 / max(len(parts), 1)
    for i, part in enumerate(parts):
        values = [metrics[part]["metrics"][n] for n in names]
        cis = [metrics[part].get("ci", {}).get(n) for n in names]
        errors = [
            [v - c[0] if c else 0 for v, c in zip(values, cis, strict=True)],
            [c[1] - v if c else 0 for v, c in zip(values, cis, strict=True)],
        ]
        positions = [j + (i - (len(parts) - 1) / 2) * width for j in range(len(names))]
        ax.bar(positions, values, width, yerr=errors, capsize=3, label=part)
    if "exact" in metrics and "test" in metrics["exact"]:
        test = metrics["exact"]["test"]["metrics"]
        ax.scatter(
            range(len(names)),
            [test.get(n, float("nan")) for n in names],
            color="black",
            marker="D",
            zorder=3,
            label="test, exact search",
        )
    ax.set_xticks(range(len(names)), names, rotation=0)
    ax.set_ylabel("value")
    ax.set_title("metrics (95% bootstrap intervals over users)")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markdown(run: RunDir, metrics: dict[str, Any], samples: dict[str, list[Recommendation]]) -> str:
    stage = run.stage("train")
    summary = stage.get("summary", {})
    lines = [f"# fusionrec run report: {run.path.name}", ""]
    protocol = metrics.get("test", {}).get("protocol", {})
    lines += ["## Metrics", "", "| metric | path | valid [95% CI] | test [95% CI] |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in metric_table(metrics)]
    lines += ["", f"![metrics]({CHART})", "", "Protocol: " + ", ".join(f"{k} {v}" for k, v in protocol.items()), ""]
    lines += [
        "*served*: the path `fusionrec recommend` and the server use (the configured retriever, then the ranker when "
        "it is applied); *exact*: the same with an exact search over every item.",
        "",
    ]
    notes = metric_notes(metrics)
    if "index" in metrics:
        lines += [notes.pop(0) + ".", ""]
    if "rerank" in metrics:
        lines += ["## Reranking", "", notes.pop(0) + ".", "", metrics["rerank"]["protocol"] + ".", ""]
    lines += _weight_lines(run, summary.get("modalities") or [])
    lines += ["## Training", ""]
    lines.append(
        f"Stopped: {summary.get('stopped', '-')}; best epoch {summary.get('best_epoch', '-')}; "
        f"{summary.get('parameters', '-')} parameters; features {stage.get('features_seconds', '-')} s; "
        f"train stage {stage.get('seconds', '-')} s in all."
    )
    if summary.get("refit"):
        from fusionrec.core.engine.refit import line as refit_line

        lines += ["", refit_line(summary["refit"]) + "."]
    log = run.path / "epochs.jsonl"
    if log.exists():
        lines += ["", "| epoch | loss | valid recall@20 | valid ndcg@20 | seconds |", "|---|---|---|---|---|"]
        for line in log.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            valid = r.get("valid", {})
            lines.append(
                f"| {r.get('epoch')} | {r.get('loss', '-')} | {valid.get('recall@20', float('nan')):.4f} | "
                f"{valid.get('ndcg@20', float('nan')):.4f} | {r.get('seconds', '-')} |"
            )
    if samples:
        lines += ["", "## Sample recommendations", ""]
        for user, rows in samples.items():
            lines += [
                f"User {user}:",
                "",
                "| # | item | title | score | modality weights | poster |",
                "|---|---|---|---|---|---|",
            ]
            for r in rows:
                weights = " · ".join(f"{m} {w:.2f}" for m, w in r.weights.items()) or "-"
                title = r.title.replace("|", "\\|")
                lines.append(f"| {r.rank} | {r.item_id} | {title} | {r.score:.4f} | {weights} | {r.image or '-'} |")
            lines.append("")
    config = (run.path / CONFIG).read_text(encoding="utf-8")
    versions = run.manifest.get("versions", {})
    lines += ["## Config (resolved)", "", "```yaml", config.rstrip(), "```", ""]
    lines += ["## Environment", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    return "\n".join(lines)


def metric_table(metrics: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(metric, path, valid, test)`` rows with 95% intervals: the served path, then the exact path when the run
    has one (``fusionrec run`` and ``evaluate`` print them, ``report.md`` shows them)."""
    paths = [("served", metrics)] + ([("exact", metrics["exact"])] if "exact" in metrics else [])
    return [
        (name, label, _cell(block.get("valid", {}), name), _cell(block.get("test", {}), name))
        for name in metrics.get("valid", {}).get("metrics", {})
        for label, block in paths
    ]


def metric_notes(metrics: dict[str, Any]) -> list[str]:
    """One line each for the index's recall against exact search and the reranking verdict, when the run has them."""
    notes = []
    if "index" in metrics:
        index = metrics["index"]
        recall = next(v for k, v in index.items() if k.startswith("recall@"))
        notes.append(f"index: recall@{index['k']} {recall:.4f} against exact search, on {index['users']:,} test users")
    if "rerank" in metrics:
        rerank = metrics["rerank"]
        applied = "applied" if rerank.get("applied") else "not applied"
        notes.append(f"{rerank['verdict']} (ranker {applied}, --rerank {rerank.get('mode', 'auto')})")
    return notes


def _cell(part: dict[str, Any], name: str) -> str:
    value = part.get("metrics", {}).get(name)
    if value is None:
        return "-"
    ci = part.get("ci", {}).get(name)
    return f"{value:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _weight_lines(run: RunDir, modalities: list[str]) -> list[str]:
    """The report's modality-weight section: each modality's mean weight, how many items it barely touches (a
    collapse shows here), and the histogram (``weights.png``)."""
    if not modalities or not (run.path / WEIGHTS_CHART).exists():
        return []
    import numpy as np

    summary = weight_summary(np.load(run.path / "item_weights.npy"), modalities)
    shares = ", ".join(
        f"{m} mean {s['mean']:.3f} ({s['below_0.01']:.0%} of items below 0.01)" for m, s in summary.items()
    )
    return [
        "## Modality weights",
        "",
        f"Per-item weight of each modality: {shares}.",
        "",
        f"![modality weights]({WEIGHTS_CHART})",
        "",
    ]


def write_report(run: RunDir, metrics: dict[str, Any], samples: dict[str, list[Recommendation]]) -> None:
    """Write ``report.md``, its chart and the modality-weight histogram into the run directory (all recorded in
    the manifest)."""
    image = chart(metrics)
    run.write(CHART, lambda handle: handle.write(image))
    modalities = run.stage("train").get("summary", {}).get("modalities") or []
    if modalities and (run.path / "item_weights.npy").exists():
        import numpy as np

        modality_weight_histogram(np.load(run.path / "item_weights.npy"), modalities, run.path / WEIGHTS_CHART)
        run.record(WEIGHTS_CHART)
    run.write_text(REPORT, markdown(run, metrics, samples))
