"""Score recommendation lists against a split, independently of fusionrec (pandas and numpy only).

    fusionrec data split PIPELINE.yaml --out split/
    fusionrec recommend RUN --as-of test --users all -k 20 --out recs.csv
    python examples/score_recs.py split/ recs.csv 20      # prints Recall@20 and NDCG@20, as docs/evaluation.md defines

Relevant items: a user's distinct test items that are not in their train or valid rows (and, for a cold-item split,
are test candidates). Users with no relevant item are not evaluated; the metrics are means over the others.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

split, recs, k = Path(sys.argv[1]), pd.read_csv(sys.argv[2], dtype=str), int(sys.argv[3]) if len(sys.argv) > 3 else 20
parts = {name: pd.read_csv(split / f"{name}.csv", dtype=str) for name in ("train", "valid", "test")}
known = set(zip(*[pd.concat([parts["train"], parts["valid"]])[c] for c in ("userId", "itemId")], strict=True))
test = parts["test"][[(u, i) not in known for u, i in zip(parts["test"].userId, parts["test"].itemId, strict=True)]]
if (split / "test_candidates.csv").exists():
    test = test[test.itemId.isin(pd.read_csv(split / "test_candidates.csv", dtype=str)["item"])]
relevant = test.groupby("userId")["itemId"].agg(set)
recs["rank"] = recs["rank"].astype(int)
top = recs[recs["rank"] <= k].sort_values(["userId", "rank"], kind="stable")
lists = top.groupby("userId")["itemId"].agg(list)
recall, ndcg = [], []
for user, items in relevant.items():
    hits = np.array([item in items for item in lists.get(user, [])[:k]], dtype=float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall.append(hits.sum() / len(items))
    ndcg.append((hits * discounts[: len(hits)]).sum() / discounts[: min(len(items), k)].sum())
print(f"users {len(relevant)}  recall@{k} {np.mean(recall):.4f}  ndcg@{k} {np.mean(ndcg):.4f}")
