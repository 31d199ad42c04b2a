"""Does the reranker help when its training candidates come from a retriever that has not seen its labels?

The rerank stage fits the ranker on the run's own model's candidates over a time slice of train; that model was
trained on the slice too, so the labels are transitions it has fitted (docs/benchmarks.md, "Quality"). This
experiment trains the same towers (same settings, seed and chosen epoch count) on train minus the slice, fits each
ranker on *that* model's candidates for the slice, and measures the ranker on the run's validation path (the
train-only model, every validation user) and, for the served refit model, on test — before and after reranking,
with the run's own evaluation code.

    python benchmarks/ranker_slice_model.py RUN_DIR [--scratch DIR]

RUN_DIR: a finished run without a ranker (e.g. runs/fused-ids-norm of docs/benchmarks.md's Quality section).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

RANKERS = {
    "lightgbm lambdarank": {"type": "lightgbm"},
    "logistic pairwise": {"type": "logistic", "objective": "pairwise"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from fusionrec.core.api import Run
    from fusionrec.core.engine import evaluation, ranker_data, ranker_fit, stages
    from fusionrec.core.engine.learners import build_two_tower
    from fusionrec.core.engine.rundir import RunDir
    from fusionrec.core.engine.trainer import Trainer
    from fusionrec.core.engine.two_stage import TwoStage
    from fusionrec.core.engine.two_tower import Histories, TwoTowerScorer

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="slice-model-"))
    if not (scratch / "manifest.json").exists():
        shutil.copytree(args.run, scratch, dirs_exist_ok=True)
    ctx = Run.open(scratch)._ctx
    stages.run_features(ctx)
    spec, split, prepared = ctx.spec, ctx.need_split(), ctx.need_prepared()
    n_users, n_items = prepared.n_users, prepared.n_items
    settings = stages._ranker_settings(ctx)
    history, _ = ranker_data.time_slice(split.train, settings.holdout)
    epochs = int(stages._trained(ctx).summary["best_epoch"])
    started = time.perf_counter()
    torch.manual_seed(spec.train.seed)
    trainer = Trainer(
        build_two_tower(spec, prepared, ctx.registry), Histories.from_frame(history, n_users), spec.train,
        RunDir.open(scratch), None, stage="slice", prefix="slice-", epochs=epochs,
    )  # fmt: skip
    trainer.resume()
    trainer.fit(None)
    net = trainer.model.cpu().eval()
    with torch.no_grad():
        vectors, weights = net.item_vectors()
    slice_stage = TwoStage(
        n_items, scorer=TwoTowerScorer(net.user, vectors, net.normalize, n_users), item_weights=weights,
        candidates=settings.candidates,
    )  # fmt: skip
    trained_seconds = time.perf_counter() - started

    def measure(stage: TwoStage, part: str) -> dict[str, float]:
        known = evaluation.known_interactions(split, part)
        score = stage.score_fn(Histories.from_frame(known, n_users), known)
        return evaluation.evaluate(score, split, part, ["recall@20", "ndcg@20"], n_items, bootstrap=0).metrics

    judged, served = stages.evaluated_path(ctx, "valid"), stages.served_path(ctx)
    rows: list[dict[str, Any]] = [
        {"ranker": "retrieval only", "valid": measure(judged, "valid"), "test": measure(served, "test")}
    ]
    source = ranker_fit.item_source(slice_stage, prepared.features, prepared.loaded.data.items, n_users)
    for label, section in RANKERS.items():
        ranker = ctx.registry.build(ctx.registry.spec("ranker", section))
        fit = ranker_fit.fit_on_slice(ranker, slice_stage, split.train, source, settings, spec.train.seed)
        row: dict[str, Any] = {"ranker": label, "fit": {k: v for k, v in fit.items() if k != "features"}}
        for part, path, known in (("valid", judged, split.train), ("test", served, None)):
            known = known if known is not None else evaluation.known_interactions(split, "test")
            stage = ranker_fit.with_inputs(
                replace(path, ranker=ranker, apply_ranker=True), stages._item_source(ctx, path), known, settings
            )
            row[part] = measure(stage, part)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]
    lines = [
        f"Slice model: {epochs} epochs on train minus each user's last {settings.holdout} ({trained_seconds:.0f} s). "
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}.",
        "",
        "| ranker (fitted on the slice model's candidates) | valid NDCG@20 | vs retrieval | test NDCG@20 "
        "| vs retrieval | candidates' recall of the slice |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        v, t = row["valid"]["ndcg@20"], row["test"]["ndcg@20"]
        recall = f"{row['fit']['recall_of_candidates']:.3f}" if "fit" in row else ""
        lines.append(
            f"| {row['ranker']} | {v:.4f} | {v / base['valid']['ndcg@20']:.3f}× | {t:.4f} "
            f"| {t / base['test']['ndcg@20']:.3f}× | {recall} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (args.out / f"slice-model-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / f"slice-model-{stamp}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
