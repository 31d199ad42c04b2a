"""Score a peer's top-K lists with fusionrec's own metric code, against the pipeline's own split.

Runs in fusionrec's venv:

    .venv/bin/python benchmarks/peers/score.py examples/movielens-small.yaml --split SPLIT_DIR \\
        --recs recs.csv --part test [--json result.json] [--paired RUN]

``--paired RUN`` also compares the list with a fusionrec run on the same split, user by user (the paired bootstrap of
``fusionrec compare``: the run's ``per_user.csv`` against the list's per-user values, users resampled once for both).

The split is loaded through the pipeline (the same loader and split fusionrec's runs use), and the exported
folder the peer trained on (``fusionrec data split --out SPLIT_DIR``) is first checked row by row against it: a
list scored against another split would be meaningless. The recs CSV (``userId,itemId,rank``, original ids) is
turned into a score function for :func:`fusionrec.core.engine.evaluation.evaluate`: a listed item scores
``K + 1 − rank``,
every other item −∞ (never recommended). So the masking, the relevant items, the evaluated users and the metrics
are exactly fusionrec's (docs/evaluation.md): an evaluated user without a list scores 0, and a listed item the
user already knew is masked by the engine (and counted here as ``listed_known``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

METRICS = ("recall@20", "ndcg@20")
PARTS = ("train", "valid", "test")


@dataclass
class Recs:
    """A recs CSV in internal ids: each listed user's items, best first."""

    lists: dict[int, npt.NDArray[np.int64]]
    k: int
    rows: int


def expected_parts(data: Any, split: Any) -> dict[str, pd.DataFrame]:
    """The pipeline's split in original ids, as ``fusionrec data split`` writes it (ids and timestamps as str)."""
    out = {}
    for name, rows in split.parts().items():
        buffer = io.StringIO()
        data.with_original_ids(rows).to_csv(buffer, index=False, lineterminator="\n")
        buffer.seek(0)
        out[name] = pd.read_csv(buffer, dtype=str, keep_default_na=False)
    return out


def compare_parts(split_dir: Path, expected: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Check that ``split_dir``'s train/valid/test CSVs hold exactly ``expected``'s rows (order aside).

    Returns:
        the number of rows of each part.

    Raises:
        SystemExit: a file is missing or a part differs (with the first differing rows).
    """
    counts = {}
    for name in PARTS:
        file = split_dir / f"{name}.csv"
        if not file.is_file():
            raise SystemExit(f"{file}: missing; export the split with `fusionrec data split PIPELINE --out DIR`")
        found = pd.read_csv(file, dtype=str, keep_default_na=False)
        want = expected[name]
        cols = ["userId", "itemId", "timestamp"]
        if list(found.columns[:3]) != cols:
            raise SystemExit(f"{file}: columns {list(found.columns)}; expected {[*cols, 'rating']}")
        a = found[cols].sort_values(cols).reset_index(drop=True)
        b = want[cols].sort_values(cols).reset_index(drop=True)
        if len(a) != len(b) or not (a.to_numpy() == b.to_numpy()).all():
            merged = a.merge(b, how="outer", indicator=True)
            diff = merged[merged["_merge"] != "both"].head(3).to_dict("records")
            raise SystemExit(
                f"{file}: {len(a):,} rows, the pipeline's {name} part has {len(b):,}; the exported split does not "
                f"match the pipeline's split (e.g. {diff}). Export it again from the same pipeline."
            )
        counts[name] = len(a)
    return counts


def read_recs(path: Path, user_ids: npt.NDArray[Any], item_ids: npt.NDArray[Any]) -> Recs:
    """Read ``userId,itemId,rank`` into internal ids.

    Raises:
        SystemExit: missing columns, an id not in the data, a rank < 1, or an item listed twice for a user.
    """
    frame = pd.read_csv(path, dtype={"userId": str, "itemId": str})
    missing = {"userId", "itemId", "rank"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{path}: missing column(s) {sorted(missing)}; expected userId,itemId,rank")
    users = {str(u): i for i, u in enumerate(user_ids)}
    items = {str(t): i for i, t in enumerate(item_ids)}
    u = frame["userId"].map(users)
    it = frame["itemId"].map(items)
    for column, mapped in (("userId", u), ("itemId", it)):
        if mapped.isna().any():
            row = int(np.flatnonzero(mapped.isna().to_numpy())[0])
            raise SystemExit(f"{path}: row {row + 2}: {column} {frame[column].iloc[row]!r} is not in the data")
    ranks = pd.to_numeric(frame["rank"], errors="coerce")
    if ranks.isna().any() or (ranks < 1).any():
        raise SystemExit(f"{path}: ranks must be integers ≥ 1")
    table = pd.DataFrame({"user": u.astype(np.int64), "item": it.astype(np.int64), "rank": ranks.astype(np.int64)})
    if table.duplicated(["user", "item"]).any():
        row = int(np.flatnonzero(table.duplicated(["user", "item"]).to_numpy())[0])
        raise SystemExit(f"{path}: row {row + 2}: user {frame['userId'].iloc[row]} lists an item twice")
    table = table.sort_values(["user", "rank"], kind="stable")
    lists = {int(user): g["item"].to_numpy(np.int64) for user, g in table.groupby("user", sort=False)}
    k = int(table.groupby("user").size().max()) if len(table) else 0
    return Recs(lists, k, len(table))


def score_fn(recs: Recs, n_items: int) -> Any:
    """A score function for ``evaluate``: ``K + 1 − rank`` for a listed item, −∞ for every other item."""

    def score(users: npt.NDArray[np.int64]) -> torch.Tensor:
        out = torch.full((len(users), n_items), float("-inf"))
        for row, user in enumerate(users.tolist()):
            items = recs.lists.get(user)
            if items is not None and len(items):
                out[row, torch.as_tensor(np.array(items))] = torch.arange(len(items), 0, -1, dtype=torch.float32)
        return out

    return score


def score_recs(
    recs: Recs,
    split: Any,
    part: str,
    n_items: int,
    *,
    metrics: tuple[str, ...] = METRICS,
    bootstrap: int = 1000,
    seed: int = 0,
    protocol: dict[str, Any] | None = None,
    paired: dict[str, Any] | None = None,
    user_ids: Any = None,
) -> dict[str, Any]:
    """Evaluate ``recs`` on ``part`` with fusionrec's engine; the result's dict plus list facts.

    With ``paired`` (``{"run": RUN}``) and ``user_ids`` (the data's original user ids), ``paired`` is filled with
    :func:`paired_with_run`'s rows."""
    from fusionrec.core.engine.evaluation import evaluate, known_interactions

    result = evaluate(
        score_fn(recs, n_items),
        split,
        part,  # type: ignore[arg-type]
        list(metrics),
        n_items,
        bootstrap=bootstrap,
        seed=seed,
        protocol=protocol,
    )
    if paired is not None:
        ids = [str(user) for user in user_ids[result.users]] if user_ids is not None else []
        paired.update(paired_with_run(result.per_user, ids, paired.pop("run"), part, bootstrap or 1000, seed))
    known = known_interactions(split, part)  # type: ignore[arg-type]
    known_keys = set((known["user"].to_numpy() * n_items + known["item"].to_numpy()).tolist())
    listed_known = sum(int(item) + user * n_items in known_keys for user, items in recs.lists.items() for item in items)
    evaluated = set(result.users.tolist())
    out = result.to_dict()
    out.pop("per_user")
    out["lists"] = {
        "k": recs.k,
        "rows": recs.rows,
        "users_listed": len(recs.lists),
        "evaluated_users_without_list": len(evaluated - set(recs.lists)),
        "listed_known": listed_known,
    }
    return out


def paired_with_run(
    values: dict[str, npt.NDArray[np.float64]], users: list[str], run: Path, part: str, samples: int, seed: int
) -> dict[str, Any]:
    """The list's per-user ``values`` (for original user ids ``users``) against fusionrec run ``run``'s, metric by
    metric: the run is ``a``, the list ``b`` (:func:`fusionrec.core.engine.evaluation.paired_bootstrap`)."""
    from fusionrec.core.api.compare import per_user
    from fusionrec.core.engine.evaluation import paired_bootstrap
    from fusionrec.core.errors import FusionrecError

    try:
        theirs = per_user(run, part)
    except FusionrecError as error:  # not a run, no per-user metrics: the message says how to fix it
        raise SystemExit(f"--paired: {error}") from error
    if set(theirs.index) != set(users):
        raise SystemExit(f"{run} evaluated other users on {part} than the list's split: score runs of the same split")
    rows = {}
    for metric, mine in values.items():
        if metric in theirs.columns:
            rows[metric] = paired_bootstrap(theirs.loc[users, metric].to_numpy(), mine, samples, seed)
    return {"run": str(run), "rows": rows}


def load_pipeline_split(pipeline: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``pipeline``'s data and run its split; returns ``(data, split, protocol entries)``."""
    from fusionrec.core.assembly import loading
    from fusionrec.registry import get_registry

    loaded = loading.load(pipeline, get_registry())
    split = loading.run_split(loaded)
    assert loaded.spec.data is not None
    spec = loading.split_spec(loaded.dataset, loaded.spec)
    protocol = {
        "dataset": loaded.spec.data.type,
        "split": spec.to_dict() if spec is not None else loading.split_name(loaded),
    }
    return loaded.data, split, protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="the pipeline whose data and split the lists are scored on")
    parser.add_argument("--split", type=Path, required=True, help="the exported split folder the peer trained on")
    parser.add_argument("--recs", type=Path, required=True, help="userId,itemId,rank CSV")
    parser.add_argument("--part", choices=["valid", "test"], required=True)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--paired", type=Path, metavar="RUN", help="compare with a fusionrec run, user by user")
    args = parser.parse_args(argv)
    data, split, protocol = load_pipeline_split(args.pipeline)
    compare_parts(args.split, expected_parts(data, split))
    recs = read_recs(args.recs, data.user_ids, data.item_ids)
    paired = {"run": args.paired} if args.paired else None
    out = score_recs(recs, split, args.part, data.n_items, bootstrap=args.bootstrap, seed=args.seed,
                     protocol=protocol, paired=paired, user_ids=data.user_ids)  # fmt: skip
    for name, value in out["metrics"].items():
        low, high = out["ci"].get(name, (float("nan"), float("nan")))
        print(f"{name:<10} {value:.4f}  [{low:.4f}, {high:.4f}]")
    print(json.dumps({"protocol": out["protocol"], "lists": out["lists"]}))
    for name, row in (paired or {}).get("rows", {}).items():
        low, high = row["difference_low"], row["difference_high"]
        print(f"{name:<10} run {row['a']:.4f}, list {row['b']:.4f}: list − run {row['difference']:+.4f} "
              f"[{low:+.4f}, {high:+.4f}], P(list not better) {row['p_not_better']:.3f}")  # fmt: skip
    if paired:
        out["paired"] = paired
    if args.json:
        from fusionrec.core.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
