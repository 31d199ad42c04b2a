"""Rerankers trained on the retriever's own candidates (core/engine/ranker_data.py), against retrieval alone.

Usage: python benchmarks/reranker_data.py RUN_DIR [--candidates 100]

RUN_DIR is a finished `fusionrec run` of a two-tower pipeline. The ranker's training set comes from the run's
towers on a time slice of train (each training user's last train interaction held out); each ranker is then
scored on validation users (history = train, labels = valid), reranking the same top-N candidates the retriever
returns, and compared with the retriever's own order. Validation only: this chooses, it does not report test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fusionrec.core.assembly import loading
from fusionrec.core.engine.features import pipeline_features
from fusionrec.core.engine.ranker_data import (
    ItemSource,
    RankerDataSettings,
    build_training_set,
    features_for,
    item_tags_from,
    retrieve_candidates,
)
from fusionrec.core.engine.recommend import open_run
from fusionrec.core.engine.two_tower import Histories
from fusionrec.registry import get_registry

RANKERS = {
    "lightgbm (lambdarank)": ("lightgbm", {}),
    "lightgbm (lambdarank, no vectors)": ("lightgbm", {"vectors": False}),
    "lightgbm (binary)": ("lightgbm", {"objective": "binary"}),
    "mlp (pointwise)": ("mlp", {"hidden": [64]}),
    "mlp (pairwise)": ("mlp", {"hidden": [64], "objective": "pairwise"}),
    "logistic (pairwise)": ("logistic", {"objective": "pairwise"}),
    "lightgbm (lambdarank, no vectors, 50 rounds, 15 leaves, 50/leaf)": (
        "lightgbm",
        {"vectors": False, "num_boost_round": 50, "num_leaves": 15, "min_data_in_leaf": 50},
    ),
    "lightgbm (binary, no vectors, 50 rounds, 15 leaves, 50/leaf)": (
        "lightgbm",
        {"objective": "binary", "vectors": False, "num_boost_round": 50, "num_leaves": 15, "min_data_in_leaf": 50},
    ),
}


def ndcg_recall(order: torch.Tensor, truth: torch.Tensor, k: int = 20) -> tuple[float, float]:
    """Mean NDCG@k and Recall@k of ranked item ids ``order`` (B, N) against boolean ``truth`` (B, n_items)."""
    hits = truth.gather(1, order[:, :k].clamp(min=0)) & (order[:, :k] >= 0)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    relevant = truth.sum(1).double()
    ideal = torch.stack([discounts[: int(min(r, k))].sum() for r in relevant])
    ndcg = (hits.double() * discounts).sum(1) / ideal
    return float(ndcg.mean()), float((hits.sum(1).double() / relevant).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--holdout", type=int, default=1, help="train interactions held out per user as labels")
    parser.add_argument("--only", default="", help="run only the rankers whose label contains this text")
    args = parser.parse_args()
    registry = get_registry()
    recommender = open_run(args.run, registry)
    loaded = loading.load(args.run / "config.yaml", registry)
    split = loading.run_split(loaded)
    features = pipeline_features(loaded, registry)
    assert recommender.scorer is not None and recommender.item_weights is not None
    source = ItemSource(
        item_vectors=recommender.scorer.item_vectors,
        item_weights=torch.from_numpy(np.asarray(recommender.item_weights)),
        modalities={key: (m.vectors, m.present) for key, m in features.matrices.items()},
        user_vectors=recommender.scorer.user_vectors,
        n_users=loaded.data.n_users,
        item_tags=item_tags_from(loaded.data.items),
    )
    settings = RankerDataSettings(holdout=args.holdout, candidates=args.candidates)
    train_set = build_training_set(split, source, settings)
    users = np.unique(split.valid["user"].to_numpy(np.int64))
    histories = Histories.from_frame(split.train, loaded.data.n_users)
    items, scores = retrieve_candidates(source, users, histories, args.candidates)
    valid_features, valid = features_for(source, split.train, users, items, scores, settings)
    truth = torch.zeros(len(users), source.n_items, dtype=torch.bool)
    position = {int(u): i for i, u in enumerate(users)}
    truth[
        torch.tensor([position[int(u)] for u in split.valid["user"]]),
        torch.from_numpy(split.valid["item"].to_numpy(np.int64, copy=True)),
    ] = True
    rows = {"retrieval only": (*ndcg_recall(items, truth), 0.0)}
    for label, (name, params) in RANKERS.items():
        if args.only not in label:
            continue
        ranker = registry.create("ranker", name, **params)
        start = time.perf_counter()
        ranker.fit(train_set.features, train_set.labels)
        reranked = torch.full(items.shape, float("-inf"))
        reranked[valid] = ranker.score(valid_features).float()
        order = items.gather(1, reranked.argsort(dim=1, descending=True, stable=True))
        rows[label] = (*ndcg_recall(order, truth), time.perf_counter() - start)
    print(json.dumps({"run": str(args.run), "training_set": train_set.info, "valid_users": len(users)}, default=str))
    base = rows["retrieval only"][0]
    print("| reranker | valid NDCG@20 | valid Recall@20 | NDCG vs retrieval | fit+score s |\n|---|---|---|---|---|")
    for label, (ndcg, recall, seconds) in rows.items():
        print(f"| {label} | {ndcg:.4f} | {recall:.4f} | {ndcg / base:.3f}× | {seconds:.1f} |")


if __name__ == "__main__":
    main()
