"""The ablation table of docs/benchmarks.md: baselines and fusionrec's fused pipelines on one split, one metric code.

Every row is a pipeline derived from one base file (benchmarks/ablation-base.yaml) by changing only the sections
that define the model, trained with ``fusionrec train``'s engine into its own run directory, and scored by the same
evaluation code (full ranking, known items masked; validation with the training history, test with training and
validation). Where a row lists several settings (``--grid``), the one with the best validation Recall@20 is kept
and its test numbers reported: test never chooses anything.

    python benchmarks/ablation.py                       # every row, into benchmarks/results/ablation/
    python benchmarks/ablation.py --only sasrec,fused   # some rows
    python benchmarks/ablation.py --grid                # also try the listed alternatives of each row
    python benchmarks/ablation.py --chosen benchmarks/results/ablation-grid   # only the settings chosen there

Writes ``ablation.json`` (every run, its settings, validation and test metrics with 95% bootstrap intervals) and
``ablation.md`` (the table) into ``--out``, and the table into docs/benchmarks/ablation.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "benchmarks" / "ablation-base.yaml"

NO_MODEL = {"fuser": None, "user": None, "retriever": None, "ranker": None}


def _two_tower(encoders: list[str] | None, fuser: dict[str, Any] | None, user: dict[str, Any], ids: bool) -> dict:
    """A two-tower row; ``encoders``/``fuser`` ``None`` keep the base pipeline's (``[]`` removes the encoders)."""
    patch: dict[str, Any] = {"user": user, "train": {"item_ids": ids}}
    if encoders is not None:
        patch["encoders"] = encoders
    if fuser is not None:
        patch["fuser"] = fuser
    elif encoders == []:
        patch["fuser"] = None
    return patch


TRANSFORMER = {"type": "transformer", "max_history": 50}

# name → (description, patch, grid of alternative patches tried with --grid)
ROWS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {
    "popularity": ("most interacted items", {**NO_MODEL, "encoders": [], "model": {"type": "popularity"}}, []),
    "itemknn": (
        "item-item cosine kNN",
        {**NO_MODEL, "encoders": [], "model": {"type": "itemknn"}},
        [{"model": {"type": "itemknn", "neighbours": 50}}, {"model": {"type": "itemknn", "neighbours": 200}}],
    ),
    "bpr_mf": (
        "matrix factorisation, BPR loss",
        {**NO_MODEL, "encoders": [], "model": {"type": "bpr_mf"}},
        [{"model": {"type": "bpr_mf", "dim": 128}}],
    ),
    "lightgcn": (
        "LightGCN, 3 layers, BPR",
        {**NO_MODEL, "encoders": [], "model": {"type": "lightgcn"}},
        [{"model": {"type": "lightgcn", "layers": 2}}],
    ),
    "vbpr": ("VBPR with the poster features", {**NO_MODEL, "encoders": ["image"], "model": {"type": "vbpr"}}, []),
    "sasrec": (
        "ids only, causal transformer (SASRec-style), fusionrec engine",
        {**_two_tower([], None, TRANSFORMER, True), "retriever": None},
        [
            {"train": {"lr": 3.0e-3}},
            {"train": {"loss": "softmax"}},
            {"user": {"max_history": 200}},
            {"train": {"loss": "softmax", "lr": 3.0e-3}},
            # issue 16: a grid as wide as the fused pipeline's
            {"train": {"loss": "softmax", "lr": 3.0e-3, "temperature": 0.05}},
            {"train": {"loss": "softmax", "lr": 3.0e-3, "dim": 128}},
        ],
    ),
    "text-only": (
        "MiniLM text only, transformer tower, no ids",
        _two_tower(["text"], {"type": "mean", "dim": 64}, TRANSFORMER, False),
        [{"train": {"lr": 3.0e-4}}, {"train": {"weight_decay": 0.1}}],
    ),
    "image-only": (
        "EfficientNet poster only, transformer tower, no ids",
        _two_tower(["image"], {"type": "mean", "dim": 64}, TRANSFORMER, False),
        [],
    ),
    "fused": (
        "image + text, attention fuser, transformer tower, no ids",
        _two_tower(None, None, TRANSFORMER, False),
        [],
    ),
    "fused+ids": (
        "image + text + item ids, attention fuser, transformer tower",
        _two_tower(None, None, TRANSFORMER, True),
        [
            {"train": {"lr": 3.0e-3}},
            {"train": {"temperature": 0.05}},
            {"train": {"loss": "softmax"}},
            {"user": {"max_history": 200}},
            {"fuser": {"type": "gated", "dim": 64}},
            {"fuser": {"type": "cross_attention", "dim": 64}},
            {"fuser": {"dim": 128}},
            {"train": {"loss": "softmax", "lr": 3.0e-3}},
            # issue 16: the attention fuser with LayerNorm'd projections (no collapse onto one modality)
            {"train": {"loss": "softmax"}, "fuser": {"normalize": True}},
            {"train": {"loss": "softmax"}, "fuser": {"normalize": True, "modality_dropout": 0.1}},
        ],
    ),
    "fused/normalize": (
        "image + text, attention fuser with normalize: true, transformer tower, no ids",
        _two_tower(None, {"type": "attention", "dim": 64, "normalize": True}, TRANSFORMER, False),
        [
            {"train": {"lr": 3.0e-4}},
            {"fuser": {"dropout": 0.3}},
            {"train": {"weight_decay": 0.1}},
            {"fuser": {"modality_dropout": 0.3}},
        ],
    ),
    "fused/normalize+dropout": (
        "… and modality_dropout: 0.1 (a modality of an item dropped while training)",
        _two_tower(
            None, {"type": "attention", "dim": 64, "normalize": True, "modality_dropout": 0.1}, TRANSFORMER, False
        ),
        [],
    ),
    "fused/gated": (
        "image + text, gated fuser (learned per-item gates), transformer tower, no ids",
        _two_tower(None, {"type": "gated", "dim": 64}, TRANSFORMER, False),
        [],
    ),
    "fused+ids/mean": ("… with the mean user tower", _two_tower(None, None, {"type": "mean"}, True), []),
    "fused+ids/attention_pool": (
        "… with the attention_pool user tower",
        _two_tower(None, None, {"type": "attention_pool"}, True),
        [],
    ),
    "fused+ids/gru": ("… with the gru user tower", _two_tower(None, None, {"type": "gru"}, True), []),
    "fused+ids+ranker": (
        "fused+ids, then the mlp ranker over 200 candidates",
        # no refit: the ranker is fitted on the validation users' candidates of the train-only towers
        {
            **_two_tower(None, None, TRANSFORMER, True),
            "ranker": {"type": "mlp"},
            "train": {"item_ids": True, "refit": False},
        },
        [],
    ),
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` applied: ``None`` removes a section, dicts merge one level deep, ``encoders`` given as
    a list keeps those modalities of the base."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key == "encoders" and isinstance(value, list):
            kept = {m: spec for m, spec in base.get("encoders", {}).items() if m in value}
            if kept:
                out["encoders"] = kept
            else:
                out.pop("encoders", None)
                out.pop("features", None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def pipeline_text(base: dict[str, Any], patch: dict[str, Any], data_path: Path) -> str:
    spec = merge(base, patch)
    spec["data"] = {**spec["data"], "path": str(data_path)}
    return yaml.safe_dump(spec, sort_keys=False)


def run_one(name: str, index: int, text: str, out: Path, registry: Any) -> dict[str, Any]:
    from fusionrec.core.api import Pipeline

    folder = out / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    slug = name.replace("/", "_").replace("+", "_")
    pipeline = folder / f"{slug}-{index}.yaml"
    pipeline.write_text(text)
    started = time.perf_counter()
    # rerank always: a row with a ranker measures the reranked path (its verdict is reported beside it)
    outcome = Pipeline.load(pipeline, registry).train(out / "runs" / f"{slug}-{index}", rerank="always")
    # the train stage's own time (a finished run that is reused takes none now)
    seconds = outcome.dir.stage("train").get("seconds", time.perf_counter() - started)
    return result_of(str(pipeline.relative_to(out)), text, outcome.metrics, seconds, outcome.summary.get("epoch"))


def adopt(spec: str, out: Path) -> tuple[str, dict[str, Any]]:
    """``NAME:INDEX=RUN_DIR``: a finished run of that row's setting made outside this script (the same pipeline,
    e.g. examples/movielens-small.yaml with one change), taken as that setting's result: its own metrics."""
    from fusionrec.core.api import Run

    label, run_dir = spec.split("=", 1)
    name, index = label.rsplit(":", 1)
    if name not in ROWS:
        raise SystemExit(f"--adopt: unknown row {name!r}")
    run = Run.open(Path(run_dir))
    text = (Path(run_dir) / "config.yaml").read_text()
    slug = name.replace("/", "_").replace("+", "_")
    folder = out / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{slug}-{index}.yaml").write_text(text)
    seconds = run.dir.stage("train").get("seconds", 0.0)
    return name, result_of(f"pipelines/{slug}-{index}.yaml", text, run.metrics, seconds, run.summary.get("epoch"))


def result_of(pipeline: str, text: str, metrics: dict[str, Any], seconds: float, epochs: Any) -> dict[str, Any]:
    result = {
        "pipeline": pipeline,
        "settings": yaml.safe_load(text),
        "seconds": round(seconds, 1),
        "epochs": epochs,
        "valid": metrics["valid"]["metrics"],
        "valid_ci": metrics["valid"]["ci"],
        "test": metrics["test"]["metrics"],
        "test_ci": metrics["test"]["ci"],
    }
    if "rerank" in metrics:
        rerank = metrics["rerank"]
        result["rerank"] = {
            "verdict": rerank["verdict"],
            "valid_before": rerank["valid_before"]["metrics"],
            "valid_after": rerank["valid_after"]["metrics"],
        }
        result["valid_note"] = (
            "validation and test: the reranked path; the ranker was fitted on the model's candidates over a time "
            "slice of train (rerank.valid_before/valid_after: every validation user, before and after)"
        )
    return result


HEADER = "| model | what | valid Recall@20 | valid NDCG@20 | test Recall@20 [95% CI] | test NDCG@20 [95% CI] |"
"""The columns every results table of these scripts starts with (:func:`cells` fills them)."""


def cells(row: dict[str, Any]) -> str:
    """A row's :data:`HEADER` cells: name, description, its chosen run's validation and test figures."""
    best = row["best"]
    t, ci = best["test"], best["test_ci"]
    return (
        f"| {row['name']} | {row['what']} | {best['valid']['recall@20']:.4f} | {best['valid']['ndcg@20']:.4f} | "
        f"{t['recall@20']:.4f} [{ci['recall@20'][0]:.4f}, {ci['recall@20'][1]:.4f}] | "
        f"{t['ndcg@20']:.4f} [{ci['ndcg@20'][0]:.4f}, {ci['ndcg@20'][1]:.4f}] |"
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER + " epochs | seconds |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        best = row["best"]
        lines.append(f"{cells(row)} {best['epochs'] or '-'} | {best['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def write(done: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the JSON, the table and the doc page from every row done so far."""
    ordered = [done[n] for n in ROWS if n in done]
    payload = {
        "protocol": "movielens-small, temporal split (per user 80/10/10 by time), full ranking over all items, "
        "train items masked for validation, train+valid for test; every rating a positive; selection on "
        "validation Recall@20",
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, python "
        f"{sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d"),
        "rows": ordered,
    }
    (args.out / "ablation.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "ablation.md").write_text(table(ordered))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(
        "# Ablation on movielens-small (generated by benchmarks/ablation.py)\n\n"
        f"Protocol: {payload['protocol']}. Date {payload['date']}; machine: {payload['machine']}.\n\n" + table(ordered)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=BASE)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ablation")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks" / "ablation.md")
    parser.add_argument("--only", help="Comma-separated row names (default: all).")
    parser.add_argument("--grid", action="store_true", help="Also try each row's alternatives; keep the best valid.")
    parser.add_argument(
        "--merge", type=Path, action="append", default=[], help="Also take the rows of another --out folder's JSON."
    )
    parser.add_argument(
        "--try",
        dest="tries",
        type=int,
        action="append",
        default=[],
        help="Run only this index of each row's settings (0: the row, 1…: its grid alternatives); repeatable.",
    )
    parser.add_argument(
        "--adopt",
        action="append",
        default=[],
        metavar="NAME:INDEX=RUN_DIR",
        help="Take a finished run made outside this script as the result of that row's setting INDEX.",
    )
    parser.add_argument(
        "--chosen",
        type=Path,
        action="append",
        default=[],
        help="Run, for each row, only the setting chosen on validation in another --out folder's JSON (its grid "
        "index): the selection made there is reused, e.g. to score the chosen settings under another base.",
    )
    args = parser.parse_args(argv)

    from fusionrec.registry import get_registry

    base = yaml.safe_load(args.base.read_text())
    data_path = (args.base.parent / base["data"]["path"]).resolve()
    names = list(ROWS) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    registry = get_registry()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "ablation.json"
    previous = json.loads(results_file.read_text()) if results_file.exists() else {"rows": []}
    done = {row["name"]: row for row in previous.get("rows", [])}
    for other in args.merge:
        for row in json.loads((other / "ablation.json").read_text())["rows"]:
            for one in [row["best"], *row["runs"]]:  # paths relative to this --out's parent
                if not one["pipeline"].startswith(".."):
                    one["pipeline"] = f"../{other.name}/{one['pipeline']}"
            done[row["name"]] = row
    chosen: dict[str, int] = {}
    for other in args.chosen:
        for row in json.loads((other / "ablation.json").read_text())["rows"]:
            chosen[row["name"]] = int(Path(row["best"]["pipeline"]).stem.rsplit("-", 1)[1])
    adopted: dict[str, list[dict[str, Any]]] = {}
    for spec in args.adopt:
        name, result = adopt(spec, args.out)
        adopted.setdefault(name, []).append(result)
    for name in names:
        what, patch, grid = ROWS[name]
        every = [patch] + [merge(patch, alt) for alt in grid]
        indices = list(range(len(every))) if args.grid else [0]
        if args.tries:
            indices = [i for i in args.tries if i < len(every)]
        if name in chosen:
            indices = [chosen[name]]
        runs = list(adopted.get(name, []))
        for i in indices:
            candidate = every[i]
            print(f"[{time.strftime('%H:%M:%S')}] {name} #{i}", flush=True)
            runs.append(run_one(name, i, pipeline_text(base, candidate, data_path), args.out, registry))
            print(
                f"    valid recall@20 {runs[-1]['valid']['recall@20']:.4f}  test recall@20 "
                f"{runs[-1]['test']['recall@20']:.4f}  ({runs[-1]['seconds']:.0f} s)",
                flush=True,
            )
        if not runs:
            continue
        best = max(runs, key=lambda r: r["valid"]["recall@20"])
        done[name] = {"name": name, "what": what, "best": best, "runs": runs}
        write(done, args)
    if not names:
        write(done, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
