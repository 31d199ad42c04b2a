"""Issue 16's quality tables: the reranker against retrieval alone, paired ratios between runs, modality weights.

Nothing here trains the towers: it takes finished run folders (``fusionrec run`` of a pipeline without a
``ranker``) and

1. **rerankers** (``--rerank RUN``): for each ranker of :data:`RANKERS`, copies the run folder, adds the ranker to
   its pipeline and reruns it there (only ``rerank`` and ``evaluate`` are redone: the towers, the index and the
   features are reused), with ``--rerank always`` so that the test figures exist whatever the verdict. Each ranker
   is fitted exactly as ``fusionrec run`` fits it (the model's candidates over a time slice of train, and with
   ``train.refit`` refitted over train + valid for test); its verdict (validation NDCG@20 before → after, every
   validation user) is the run's own. The paired ratio of each reranked run against retrieval alone on test comes
   from the runs' per-user metrics (:func:`fusionrec.core.api.compare.compare_runs`).
2. **paired ratios** (``--pair BASELINE CANDIDATE``, repeatable): ``compare_runs`` on test (and validation).
3. **modality weights** (``--weights RUN``, repeatable): the mean per-item weight of each modality in the run's
   ``item_weights.npy`` and the share of items below 0.01.

    python benchmarks/quality.py --rerank runs/ml-fused --pair runs/ml-sasrec runs/ml-fused --weights runs/ml-fused

Prints markdown tables and writes them, with the JSON, to ``--out`` (default benchmarks/results/quality/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

# label → the ranker section, and changes to the evaluate section (what the ranker learns from)
RANKERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "logistic (the seed's σ(W·F + b)), pairwise": ({"type": "logistic", "objective": "pairwise"}, {}),
    "mlp [128, 64], pairwise": ({"type": "mlp", "objective": "pairwise"}, {}),
    "mlp [128, 64], pointwise (the seed's loss)": ({"type": "mlp"}, {}),
    "lightgbm lambdarank (defaults)": ({"type": "lightgbm"}, {}),
    # a second round, chosen on validation like the first
    "lightgbm lambdarank, 300 trees of 31 leaves": ({"type": "lightgbm", "num_boost_round": 300, "num_leaves": 31}, {}),
    "lightgbm lambdarank, holdout 1": ({"type": "lightgbm"}, {"ranker_holdout": 1}),
    "lightgbm lambdarank, holdout 6": ({"type": "lightgbm"}, {"ranker_holdout": 6}),
    "lightgbm lambdarank, 50 candidates": ({"type": "lightgbm"}, {"candidates": 50}),
    "logistic pairwise, 50 candidates": ({"type": "logistic", "objective": "pairwise"}, {"candidates": 50}),
}


def rerank_rows(run: Path, out: Path, only: str) -> list[dict[str, Any]]:
    """Each ranker of :data:`RANKERS` added to ``run``'s pipeline, in a copy of the run folder."""
    from fusionrec.core.api import Pipeline
    from fusionrec.core.api.compare import compare_runs
    from fusionrec.registry import get_registry

    registry = get_registry()
    base = json.loads((run / "metrics.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [{"ranker": "retrieval only", "run": str(run), "valid": base["valid"]["metrics"], "test": base["test"]}]
    for index, (label, (section, evaluate)) in enumerate(RANKERS.items()):
        if only and only not in label:
            continue
        target = out / "runs" / f"{run.name}-ranker{index}"
        if not (target / "metrics.json").exists():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(run, target, ignore=shutil.ignore_patterns(".*.lock"))
        pipeline = out / "runs" / f"{run.name}-ranker{index}.yaml"
        changed = {**config, "ranker": section, "evaluate": {**config.get("evaluate", {}), **evaluate}}
        pipeline.write_text(yaml.safe_dump(changed, sort_keys=False))
        started = time.perf_counter()
        done = Pipeline.load(pipeline, registry).train(target, rerank="always")
        seconds = time.perf_counter() - started
        rerank = done.metrics["rerank"]
        paired = compare_runs(run, target, part="test", metrics=["ndcg@20", "recall@20"], samples=1000)
        rows.append({
            "ranker": label, "section": section, "evaluate": evaluate, "run": str(target),
            "seconds": round(seconds, 1),
            "valid_before": rerank["valid_before"]["metrics"], "valid": rerank["valid_after"]["metrics"],
            "verdict": rerank["verdict"], "helped": rerank["helped"],
            "fit": rerank["fit"], "refit": rerank.get("refit"),
            "test": done.metrics["test"], "paired_test": paired,
        })  # fmt: skip
        print(f"{label}: {rerank['verdict']}; test NDCG@20 {done.metrics['test']['metrics']['ndcg@20']:.4f}")
    return rows


def _ratio(result: dict[str, Any]) -> str:
    """A paired ratio with its 95% interval, as the tables print it."""
    return f"{result['ratio']:.3f}× [{result['ratio_low']:.3f}, {result['ratio_high']:.3f}]"


def rerank_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| ranker | valid NDCG@20 | valid Recall@20 | verdict | test NDCG@20 [95% CI] | test Recall@20 [95% CI] "
        "| test NDCG@20 vs retrieval, paired [95% CI] | P(not better) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        test, ci = row["test"]["metrics"], row["test"].get("ci", {})
        cell = {m: f"{test[m]:.4f} [{ci[m][0]:.4f}, {ci[m][1]:.4f}]" for m in ("ndcg@20", "recall@20")}
        paired = next((p for p in row.get("paired_test", []) if p["metric"] == "ndcg@20"), None)
        ratio = _ratio(paired) if paired else "1×"
        p_value = f"{paired['p_not_better']:.3f}" if paired else ""
        verdict = ("helped" if row["helped"] else "did not help") if "helped" in row else ""
        lines.append(
            f"| {row['ranker']} | {row['valid']['ndcg@20']:.4f} | {row['valid']['recall@20']:.4f} | {verdict} "
            f"| {cell['ndcg@20']} | {cell['recall@20']} | {ratio} | {p_value} |"
        )
    return "\n".join(lines)


def pair_rows(pairs: list[list[str]]) -> list[dict[str, Any]]:
    from fusionrec.core.api.compare import compare_runs

    rows = []
    for baseline, candidate in pairs:
        for part in ("valid", "test"):
            for row in compare_runs(baseline, candidate, part=part, metrics=["recall@20", "ndcg@20"]):
                rows.append({"baseline": baseline, "candidate": candidate, **row})
    return rows


def pair_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| candidate vs baseline | part | metric | baseline | candidate | ratio [95% CI, paired] | difference [95% CI] "
        "| P(not better) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['candidate']).name} vs {Path(r['baseline']).name} | {r['part']} | {r['metric']} | {r['a']:.4f} "
            f"| {r['b']:.4f} | {_ratio(r)} "
            f"| {r['difference']:+.4f} [{r['difference_low']:+.4f}, {r['difference_high']:+.4f}] "
            f"| {r['p_not_better']:.3f} |"
        )
    return "\n".join(lines)


def halves_rows(baselines: list[str], candidates: list[str], seed: int = 0) -> dict[str, Any]:
    """Issue 17's user-half confirmation from per-user metrics: users split in two seeded halves; on half A each
    side's setting is chosen by validation Recall@20 (among ``baselines``, among ``candidates``); on half B the chosen
    candidate's test gain over the chosen baseline is measured with a paired bootstrap, and compared with the same
    ratio on half A (the half it was chosen on)."""
    from fusionrec.core.api.compare import per_user
    from fusionrec.core.engine.evaluation import paired_bootstrap

    users = sorted(per_user(candidates[0], "valid").index)
    order = np.random.default_rng(seed).permutation(len(users))
    half_a = {users[i] for i in order[: len(users) // 2]}

    def chosen(runs: list[str]) -> tuple[str, dict[str, float]]:
        scores = {}
        for run in runs:
            valid = per_user(run, "valid")
            scores[run] = float(valid.loc[valid.index.isin(half_a), "recall@20"].mean())
        return max(scores, key=lambda r: scores[r]), scores

    baseline, baseline_scores = chosen(baselines)
    candidate, candidate_scores = chosen(candidates)
    out: dict[str, Any] = {
        "seed": seed, "half_a_users": len(half_a), "baseline": baseline, "candidate": candidate,
        "half_a_valid_recall@20": {**baseline_scores, **candidate_scores}, "test": {},
    }  # fmt: skip
    a_test, b_test = per_user(baseline, "test"), per_user(candidate, "test")
    for half, members in (("A (chosen on)", half_a), ("B (confirming)", set(a_test.index) - half_a)):
        keep = sorted(set(a_test.index) & members)
        for metric in ("recall@20", "ndcg@20"):
            result = paired_bootstrap(a_test.loc[keep, metric].to_numpy(), b_test.loc[keep, metric].to_numpy(), 1000, 0)
            out["test"][f"{half} {metric}"] = result
    return out


def halves_table(result: dict[str, Any]) -> str:
    lines = [
        f"Settings chosen on half A's validation ({result['half_a_users']} users, seed {result['seed']}): baseline "
        f"`{Path(result['baseline']).name}`, candidate `{Path(result['candidate']).name}` (half-A valid Recall@20: "
        + ", ".join(f"{Path(k).name} {v:.4f}" for k, v in result["half_a_valid_recall@20"].items())
        + ").",
        "",
        "| test users | metric | baseline | candidate | ratio [95% CI, paired] | P(not better) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in result["test"].items():
        half, metric = label.rsplit(" ", 1)
        lines.append(
            f"| {half}, {r['users']} users | {metric} | {r['a']:.4f} | {r['b']:.4f} "
            f"| {_ratio(r)} | {r['p_not_better']:.3f} |"
        )
    return "\n".join(lines)


def weight_rows(runs: list[str]) -> list[dict[str, Any]]:
    from fusionrec.core.engine.learners import train_summary
    from fusionrec.core.engine.rundir import RunDir

    rows = []
    for run in runs:
        weights = np.load(Path(run) / "item_weights.npy", allow_pickle=False)
        summary = train_summary(RunDir.open(Path(run)))
        names = summary.get("modalities") or [f"modality {j}" for j in range(weights.shape[1])]
        for j, name in enumerate(names):
            column = weights[:, j]
            rows.append({
                "run": run, "modality": name, "mean": float(column.mean()), "below_0.01": float((column < 0.01).mean()),
                "p5": float(np.percentile(column, 5)), "p95": float(np.percentile(column, 95)),
            })  # fmt: skip
    return rows


def weight_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | modality | mean weight | items below 0.01 | 5th–95th percentile |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {Path(r['run']).name} | {r['modality']} | {r['mean']:.4f} | {r['below_0.01']:.1%} "
            f"| {r['p5']:.3f}–{r['p95']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rerank", type=Path, help="A finished run without a ranker: the reranker table.")
    parser.add_argument("--only", default="", help="Only the rankers whose label contains this text.")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASELINE", "CANDIDATE"))
    parser.add_argument("--halves-baseline", action="append", default=[], help="A baseline run (repeatable).")
    parser.add_argument("--halves-candidate", action="append", default=[], help="A candidate run (repeatable).")
    parser.add_argument("--weights", action="append", default=[], help="A run whose modality weights to summarise.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report: dict[str, Any] = {
        "started": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "load_average": os.getloadavg(),
    }
    sections = []
    if args.rerank:
        report["rerank"] = rerank_rows(args.rerank, args.out, args.only)
        sections.append(f"### Rerankers over {args.rerank.name}\n\n" + rerank_table(report["rerank"]))
    if args.pair:
        report["pairs"] = pair_rows(args.pair)
        sections.append("### Paired ratios\n\n" + pair_table(report["pairs"]))
    if args.halves_baseline and args.halves_candidate:
        report["halves"] = halves_rows(args.halves_baseline, args.halves_candidate)
        sections.append("### User halves: chosen on one, confirmed on the other\n\n" + halves_table(report["halves"]))
    if args.weights:
        report["weights"] = weight_rows(args.weights)
        sections.append("### Modality weights\n\n" + weight_table(report["weights"]))
    report["load_average_end"] = os.getloadavg()
    text = f"Measured {started}, {report['machine']}, load average {report['load_average'][0]:.1f}.\n\n"
    text += "\n\n".join(sections) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (args.out / f"quality-{stamp}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / f"quality-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
