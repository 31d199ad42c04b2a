"""Seen-item exclusion in the ``faiss`` retriever: its IDSelector path against its over-fetch path, in one process.

The data and seen lists are those of ``fusionrec bench retrieval`` (synthetic clustered vectors, 50–500 seen items
per user, half among the user's nearest). For each index the retriever is searched with exclusions through its
own path (a per-query IDSelector on the CPU) and through its over-fetch path (forced with the private switch the
benchmark's :func:`~fusionrec.core.bench.retrieval.overfetch_search` uses), all users in one call and one user per
call, in alternating rounds; medians count. The benchmark's own ``measure_exclusion`` (forced over-fetch against
a raw FAISS IDSelector) runs on the same index too.

    python benchmarks/retrieval_exclusion.py --sizes 100000 --dim 64 --threads 1 --out /tmp/exclusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from fusionrec.core.bench import retrieval as br
from fusionrec.core.bench.retrieval_data import make_exclusion, synthetic
from fusionrec.core.bench.timing import alternate
from fusionrec.registry import get_registry


def measure(choice: br.IndexChoice, n: int, dim: int, options: br.BenchOptions, rounds: int) -> dict[str, Any]:
    data = synthetic(n, dim, options.n_queries, options.seed)
    exclusion = make_exclusion(data, options.exclusion_users, br.K, options.metric, options.seed)
    retriever = br.create_retriever(get_registry(), options, choice)
    start = time.perf_counter()
    retriever.build(data.vectors, data.ids)
    build_s = time.perf_counter() - start
    _, index = br.faiss_indexes(retriever, br.K)
    bench = br.measure_exclusion(retriever, index, choice, exclusion, options, False)
    users = bench["users"]
    queries, seen = exclusion.queries[:users], exclusion.seen[:users]
    own = retriever.search(queries, br.K, exclude=seen).ids
    path = retriever.exclusion_path
    forced = br.overfetch_search(retriever, queries, seen)
    calls = {
        "selector_batched": lambda: retriever.search(queries, br.K, exclude=seen),
        "overfetch_batched": lambda: br.overfetch_search(retriever, queries, seen),
        "selector_per_user": lambda: [
            retriever.search(queries[r : r + 1], br.K, exclude=[seen[r]]) for r in range(users)
        ],
        "overfetch_per_user": lambda: [
            br.overfetch_search(retriever, queries[r : r + 1], [seen[r]]) for r in range(users)
        ],
    }
    times = alternate(calls, rounds)
    out: dict[str, Any] = {
        "label": choice.label,
        "n": n,
        "dim": dim,
        "build_s": build_s,
        "users": users,
        "exclusion_path": path,
        "same_ids": bool((own == forced).all()),
        "recall_at_10": {
            "selector": br.recall(own, exclusion.truth[:users]),
            "overfetch": br.recall(forced, exclusion.truth[:users]),
        },
        "users_per_s": {name: users / statistics.median(t) for name, t in times.items()},
        "seconds": times,
        "benchmark_measure_exclusion": {name: m["qps"] for name, m in bench["methods"].items()},
    }
    for way in ("batched", "per_user"):
        over, sel = times[f"overfetch_{way}"], times[f"selector_{way}"]
        pairs = [o / s for o, s in zip(over, sel, strict=True)]
        out[f"ratio_{way}"] = statistics.median(over) / statistics.median(sel)
        out[f"ratio_{way}_rounds"] = [min(pairs), max(pairs)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000", help="Comma-separated catalogue sizes.")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--index", action="append", default=[], help="'FACTORY|search', repeatable.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write.")
    args = parser.parse_args()
    options = br.BenchOptions(dim=args.dim, threads=args.threads, device="cpu")
    faiss.omp_set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    results = []
    for n in br.parse_sizes(args.sizes):
        lists, m = br.ivf_lists(n), br.pq_subquantizers(args.dim)
        texts = args.index or [
            "Flat",
            "HNSW32|efSearch=32",
            f"IVF{lists},Flat|nprobe=8",
            f"IVF{lists},PQ{m}np|nprobe=32",
        ]
        for text in texts:
            row = measure(br.parse_index(text), n, args.dim, options, args.rounds)
            results.append(row)
            u = row["users_per_s"]
            print(
                f"{n:>9,} {row['label']:<28} same ids {row['same_ids']}, recall {row['recall_at_10']['selector']:.3f}; "
                f"batched {u['selector_batched']:,.0f} vs {u['overfetch_batched']:,.0f} users/s "
                f"(×{row['ratio_batched']:.2f}), per user {u['selector_per_user']:,.0f} vs "
                f"{u['overfetch_per_user']:,.0f} (×{row['ratio_per_user']:.2f})",
                flush=True,
            )
            load.append(os.getloadavg()[0])
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "threads": args.threads,
        "rounds": args.rounds,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_1min": load,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
