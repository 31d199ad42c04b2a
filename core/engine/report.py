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

REPORT = "report.md"
CHART = "report.png"


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
    if "rerank" in metrics:
        test = metrics["rerank"]["test"]["metrics"]
        ax.scatter(
            range(len(names)),
            [test.get(n, float("nan")) for n in names],
            color="black",
            marker="D",
            zorder=3,
            label="test, reranked",
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
    lines += ["## Metrics", "", "| metric | valid [95% CI] | test [95% CI] |", "|---|---|---|"]
    for name in metrics.get("valid", {}).get("metrics", {}):
        cells = []
        for part in ("valid", "test"):
            value = metrics.get(part, {}).get("metrics", {}).get(name)
            ci = metrics.get(part, {}).get("ci", {}).get(name)
            cells.append("-" if value is None else f"{value:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += ["", f"![metrics]({CHART})", "", "Protocol: " + ", ".join(f"{k} {v}" for k, v in protocol.items()), ""]
    if "rerank" in metrics:
        rerank = metrics["rerank"]
        lines += ["## Reranking", "", rerank["verdict"] + ".", "", rerank["protocol"] + ".", ""]
        test = rerank["test"]["metrics"]
        lines.append("Test with reranking: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()) + ".")
        lines.append("")
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


def write_report(run: RunDir, metrics: dict[str, Any], samples: dict[str, list[Recommendation]]) -> None:
    """Write ``report.md`` and its chart into the run directory (both recorded in the manifest)."""
    image = chart(metrics)
    run.write(CHART, lambda handle: handle.write(image))
    run.write_text(REPORT, markdown(run, metrics, samples))
