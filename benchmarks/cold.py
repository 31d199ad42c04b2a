"""The cold-item table of docs/benchmarks.md: recommending items no model has seen an interaction of.

The base pipeline is examples/movielens-small-cold.yaml (``cold_items`` split: 20% of the items with all their
interactions held out for test, 10% for validation; test ranks among the held-out test items only). Rows are the
ablation's (benchmarks/ablation.py), derived from that base the same way, trained by the same engine and scored by
the same code; a ``random`` row scores every candidate with seeded uniform noise through the same evaluation code
(the mean over ``--random-seeds`` seeds, and the exact expectation), which is the level collaborative models are
held to when every candidate is an item they never saw.

    python benchmarks/cold.py                              # default rows, into benchmarks/results/cold/
    python benchmarks/cold.py --only fused,text-only

Writes ``cold.json`` and ``cold.md`` into ``--out`` and the table into docs/benchmarks/cold.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import ablation  # noqa: E402

BASE = REPO / "examples" / "movielens-small-cold.yaml"
ROWS = ["popularity", "sasrec", "text-only", "image-only", "fused"]
K = 20


def random_row(base_file: Path, seeds: int, bootstrap: int) -> dict[str, Any]:
    """Seeded uniform scores through :func:`fusionrec.core.engine.evaluation.evaluate` (mean over seeds), and the exact
    expectation: hits in a random top K follow a hypergeometric law, so E[hits] = K·|R|/|C| for a user with |R|
    relevant items among |C| rankable candidates, E[Recall@K] = K/|C| and E[NDCG@K] = (|R|/|C|)·Σ_{i≤K} 1/log2(i+1)
    over the ideal DCG."""
    import numpy as np
    import torch

    from fusionrec.core.assembly import loading
    from fusionrec.core.engine.evaluation import evaluate, known_interactions
    from fusionrec.registry import get_registry

    registry = get_registry()
    loaded = loading.load(base_file, registry)
    split = loading.run_split(loaded)
    n_items = loaded.data.n_items
    out: dict[str, Any] = {}
    for part, candidates in (("valid", split.valid_candidate_items), ("test", split.candidate_items)):
        assert candidates is not None, "the cold-item base pipeline must use a split with candidate items"
        runs = []
        for seed in range(seeds):
            generator = torch.Generator().manual_seed(seed)

            def score(users: Any, generator: torch.Generator = generator) -> torch.Tensor:
                return torch.rand(len(users), n_items, generator=generator)

            runs.append(
                evaluate(
                    score,
                    split,
                    part,
                    [f"recall@{K}", f"ndcg@{K}"],
                    n_items,
                    registry=registry,
                    bootstrap=bootstrap,
                    seed=seed,
                ).to_dict()
            )
        metrics = {name: float(np.mean([r["metrics"][name] for r in runs])) for name in runs[0]["metrics"]}
        # the exact expectation, per user: rankable = candidates minus the user's known (masked) items
        frame = split.valid if part == "valid" else split.test
        known = known_interactions(split, part)
        cand = set(int(i) for i in candidates)
        known_by_user = known.groupby("user")["item"].agg(lambda s: set(int(i) for i in s)).to_dict()
        discounts = 1.0 / np.log2(np.arange(2, K + 2))
        recalls, ndcgs = [], []
        for user, items in frame.groupby("user")["item"]:
            relevant = set(int(i) for i in items) & cand
            if not relevant:
                continue
            c = len(cand - known_by_user.get(user, set()))
            r = len(relevant)
            k = min(K, c)
            recalls.append(k / c)  # E[hits] / |R| (recall's denominator is |R|, as RecBole's)
            ndcgs.append((r / c) * discounts[:k].sum() / discounts[: min(r, K)].sum())
        out[part] = metrics
        out[f"{part}_ci"] = runs[0]["ci"]
        out[f"{part}_expected"] = {f"recall@{K}": float(np.mean(recalls)), f"ndcg@{K}": float(np.mean(ndcgs))}
        out[f"{part}_candidates"] = len(cand)
    return out


def table(rows: list[dict[str, Any]], random: dict[str, Any]) -> str:
    lines = [ablation.HEADER + " test Recall@20 / random |", "|---|---|---|---|---|---|---|"]
    base = random["test_expected"][f"recall@{K}"]
    for row in rows:
        lines.append(f"{ablation.cells(row)} {row['best']['test']['recall@20'] / base:.1f}× |")
    t = random["test"]
    lines.append(
        f"| random | uniform scores, mean of the seeds (exact expectation: Recall@20 {base:.4f}, NDCG@20 "
        f"{random['test_expected'][f'ndcg@{K}']:.4f}) | {random['valid'][f'recall@{K}']:.4f} | "
        f"{random['valid'][f'ndcg@{K}']:.4f} | {t[f'recall@{K}']:.4f} | {t[f'ndcg@{K}']:.4f} | "
        f"{t[f'recall@{K}'] / base:.1f}× |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=BASE)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cold")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks" / "cold.md")
    parser.add_argument("--only", help=f"Comma-separated ablation rows (default: {','.join(ROWS)}).")
    parser.add_argument("--random-seeds", type=int, default=10)
    parser.add_argument("--grid", action="store_true", help="Also try each row's alternatives; keep the best valid.")
    args = parser.parse_args(argv)
    names = ROWS if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ablation.ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {', '.join(ablation.ROWS)}")

    from fusionrec.registry import get_registry

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "cold.json"
    previous = json.loads(results.read_text()) if results.exists() else {"rows": []}
    done = {row["name"]: row for row in previous.get("rows", [])}
    base = yaml.safe_load(args.base.read_text())
    data_path = (args.base.parent / base["data"]["path"]).resolve()
    registry = get_registry()
    for name in names:
        what, patch, grid = ablation.ROWS[name]
        every = [patch] + ([ablation.merge(patch, alt) for alt in grid] if args.grid else [])
        runs = []
        for index, candidate in enumerate(every):
            print(f"[{time.strftime('%H:%M:%S')}] {name} #{index}", flush=True)
            text = ablation.pipeline_text(base, candidate, data_path)
            runs.append(ablation.run_one(name, index, text, args.out, registry))
            print(f"    valid recall@20 {runs[-1]['valid']['recall@20']:.4f}  test {runs[-1]['test']['recall@20']:.4f}")
        best = max(runs, key=lambda r: r["valid"]["recall@20"])  # chosen on validation only
        done[name] = {"name": name, "what": what, "best": best, "runs": runs}
    random = random_row(args.base, args.random_seeds, bootstrap=200)
    ordered = [done[n] for n in ablation.ROWS if n in done]
    payload = {
        "protocol": "movielens-small, cold_items split (seed 0: 20% of the items with all their interactions for "
        "test, 10% for validation, the rest train); each part ranks among its held-out items only, the user's "
        "known items masked; test histories = train + validation interactions; selection on validation Recall@20",
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, python "
        f"{sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d"),
        "random": random,
        "rows": ordered,
    }
    text = table(ordered, random)
    (args.out / "cold.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "cold.md").write_text(text)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(
        "# Cold items on movielens-small (generated by benchmarks/cold.py)\n\n"
        f"Protocol: {payload['protocol']}. Test candidates: {random['test_candidates']:,} items. "
        f"Date {payload['date']}; machine: {payload['machine']}.\n\n" + text
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
