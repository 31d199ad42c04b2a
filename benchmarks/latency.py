"""The latency budget of one recommendation (issue 19): the two-stage path for one user, stage by stage, against
exact scoring of every item plus ranking every item, in the same process.

Per query (one user at a time, as a server answers), timed separately and end to end:

- **tower**: the user tower over the user's last ``max_history`` item vectors;
- **index**: the retriever's search for the top ``N`` candidates with the user's seen items excluded
  (``Retriever.search_prepared``, the engine's lean path);
- **ranker**: ranking features of the ``N`` candidates and the ranker's scores, then the reorder;
- **format**: the ``k`` final rows as the API returns them (ids, titles, scores, weights);

and the baseline: the same tower, then **exact** scores of every item (seen items masked) and the ranker over
**every** item, then the top ``k``. The two paths take turns query by query, so both see the same machine drift.

Catalogues: a finished run (``--run DIR``: its own tower, index and ranker, e.g. the quickstart or the
movielens-small headline run), and synthetic catalogues (``--sizes 100000,1000000``) with the same kinds of
components built with random weights (timing only): 64-d unit item vectors, a ``transformer`` user tower
(max_history 50), a ``faiss`` ``IVF{4·√n},Flat`` index (``nprobe=16``) and an ``mlp`` ranker fitted for a few steps
on random pairs. Prints p50/p99 per stage, writes JSON, and prints Markdown rows for docs/benchmarks.md.

    .venv/bin/python benchmarks/latency.py [--run runs/quickstart] [--sizes 100000,1000000] [--queries 200]
        [--candidates 200] [--k 10] [--out benchmarks/results/latency/latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fusionrec.core.api import Run
from fusionrec.core.engine.two_stage import Candidates, Seen, TwoStage, masked_top_k
from fusionrec.core.engine.two_tower import Histories, TwoTowerScorer
from fusionrec.registry import get_registry

STAGES = ("tower", "index", "ranker", "format")


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def one_query(
    stage: TwoStage, user: int, histories: Histories, k: int, rows: Callable[[list[int]], Any]
) -> dict[str, float]:
    """The two-stage path for one user, each stage timed."""
    users = np.array([user], dtype=np.int64)
    seen = Seen.of_histories(histories, users)
    queries, t_tower = timed(lambda: stage.query_vectors(users, histories))
    found, t_index = timed(lambda: stage.retrieve(queries, seen, max(k, stage.candidates)))
    (final, _), t_rank = timed(lambda: stage.rerank(queries, found))
    _, t_format = timed(lambda: rows(final.items[0, :k].tolist()))
    return {"tower": t_tower, "index": t_index, "ranker": t_rank, "format": t_format}


def one_exact(stage: TwoStage, user: int, histories: Histories, k: int) -> dict[str, float]:
    """The baseline for one user: exact scores of every item, then the ranker over every unseen item."""
    assert stage.scorer is not None and stage.ranker is not None
    users = np.array([user], dtype=np.int64)
    seen = Seen.of_histories(histories, users)
    queries, t_tower = timed(lambda: stage.query_vectors(users, histories))

    def score_all() -> Any:
        scores = queries @ stage.scorer.item_vectors.T  # type: ignore[union-attr]
        values, items = masked_top_k(scores, seen, stage.n_items)  # every unseen item, in order
        return stage.rerank(queries, Candidates(items, values))

    (final, _), t_all = timed(score_all)
    final.items[0, :k].tolist()
    return {"tower": t_tower, "exact+rank all": t_all}


def measure(
    stage: TwoStage, histories: Histories, users: np.ndarray, k: int, rows: Callable[[list[int]], Any]
) -> dict[str, Any]:
    two: dict[str, list[float]] = {name: [] for name in (*STAGES, "total")}
    base: dict[str, list[float]] = {"total": []}
    for _ in range(3):  # warm-up
        one_query(stage, int(users[0]), histories, k, rows)
        one_exact(stage, int(users[0]), histories, k)
    for user in users:
        times = one_query(stage, int(user), histories, k, rows)
        for name, seconds in times.items():
            two[name].append(seconds)
        two["total"].append(sum(times.values()))
        base["total"].append(sum(one_exact(stage, int(user), histories, k).values()))
    out = {
        "two_stage": {name: percentiles(samples) for name, samples in two.items()},
        "exact_rank_all": percentiles(base["total"]),
        "queries": len(users),
    }
    out["speedup_p99"] = round(out["exact_rank_all"]["p99_ms"] / out["two_stage"]["total"]["p99_ms"], 1)
    out["speedup_p50"] = round(out["exact_rank_all"]["p50_ms"] / out["two_stage"]["total"]["p50_ms"], 1)
    return out


def from_run(path: Path, queries: int, k: int, seed: int) -> dict[str, Any]:
    run = Run.open(path, rerank="always")
    recommender = run.recommender
    stage = recommender.stage
    users = np.random.default_rng(seed).choice(
        recommender.data.n_users, min(queries, recommender.data.n_users), replace=False
    )
    result = measure(
        stage,
        recommender.histories,
        users,
        k,
        lambda items: [recommender._row(r + 1, i, 0.0, None, None) for r, i in enumerate(items)],
    )
    return {"catalogue": f"run {path}", "items": recommender.data.n_items, "path": run.path_description, **result}


def synthetic(n_items: int, queries: int, k: int, candidates: int, seed: int) -> dict[str, Any]:
    registry = get_registry()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dim, history, n_users = 64, 50, max(queries, 1000)
    vectors = rng.standard_normal((n_items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tower = registry.build(
        registry.spec("user_tower", {"type": "transformer", "max_history": history}), item_dim=dim, n_users=n_users
    )
    scorer = TwoTowerScorer(tower, torch.from_numpy(vectors), True, n_users)
    nlist = int(4 * np.sqrt(n_items))
    retriever = registry.build(
        registry.spec("retriever", {"type": "faiss", "index": f"IVF{nlist},Flat", "search": "nprobe=16"})
    )
    started = time.perf_counter()
    retriever.build(vectors, np.arange(n_items, dtype=np.int64))
    build_s = time.perf_counter() - started
    ranker = registry.build(registry.spec("ranker", {"type": "mlp", "hidden": [64], "epochs": 2}))
    weights = torch.full((n_items, 2), 0.5)
    stage = TwoStage(
        n_items, scorer=scorer, item_weights=weights, retriever=retriever, ranker=ranker, candidates=candidates
    )
    items = torch.from_numpy(rng.integers(0, n_items, (n_users, history)).reshape(-1))
    offsets = torch.arange(0, n_users * history + 1, history)
    histories = Histories(items, offsets)
    # fit the ranker briefly on random candidate pairs so it has weights and input statistics (timing only)
    probe = np.arange(64, dtype=np.int64)
    found = stage.retrieve(stage.query_vectors(probe, histories), Seen.of_histories(histories, probe), candidates)
    features = stage.features(stage.query_vectors(probe, histories), found)
    ranker.fit(features, torch.from_numpy((rng.random(len(features)) < 0.05).astype(np.float32)))
    users = rng.choice(n_users, queries, replace=False)
    result = measure(
        stage, histories, users, k, lambda chosen: [{"item": i, "rank": r + 1} for r, i in enumerate(chosen)]
    )
    return {"catalogue": f"synthetic {n_items:,}", "items": n_items, "index_build_s": round(build_s, 1),
            "path": f"faiss IVF{nlist},Flat nprobe=16, top {candidates} reranked by mlp", **result}  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| catalogue | items | tower p50/p99 | index p50/p99 | ranker p50/p99 | format p50/p99 | two-stage p50/p99 "
        "| exact + rank all p50/p99 | ×p99 |"
    )
    lines = [head, "|---|---:|---|---|---|---|---|---|---:|"]
    for r in rows:
        s = r["two_stage"]
        cells = [f"{s[name]['p50_ms']:.2f} / {s[name]['p99_ms']:.2f}" for name in (*STAGES, "total")]
        base = r["exact_rank_all"]
        exact = f"{base['p50_ms']:.1f} / {base['p99_ms']:.1f}"
        lines.append(f"| {r['catalogue']} | {r['items']:,} | {' | '.join(cells)} | {exact} | {r['speedup_p99']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and FAISS threads (a server's per-request setting)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency/latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    load = [round(x, 1) for x in os.getloadavg()]
    rows = [from_run(path, args.queries, args.k, args.seed) for path in args.run]
    rows += [synthetic(int(n), args.queries, args.k, args.candidates, args.seed) for n in args.sizes.split(",") if n]
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": args.threads,
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": [load[0], round(os.getloadavg()[0], 1)],
        "settings": {"queries": args.queries, "candidates": args.candidates, "k": args.k},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(rows))
    print(f"load average (1 min) at start / end: {result['load_average_1min']}; {result['date']}; wrote {args.out}")


if __name__ == "__main__":
    main()
