"""Reading an exported split and writing top-K lists: shared by the peer adapters, which run in the peers' venvs.

Only numpy and pandas are used (both peers' venvs have them); fusionrec is not importable there. Ids are read as
strings and written back unchanged, so ``userId``/``itemId`` in the lists are the split files' original ids.

The protocol the adapters follow (the same as fusionrec's, docs/evaluation.md):

- phase ``valid``: train on ``train.csv``; lists for the users of ``valid.csv``; each user's ``train`` items masked.
- phase ``test``: train on ``train.csv`` + ``valid.csv``; lists for the users of ``test.csv``; each user's
  ``train`` and ``valid`` items masked.
- Only items that occur in the training interactions can be recommended: an id-based peer has nothing learned
  for the others, and an item known to the library only because it appears in the target part must not be ranked
  by an untrained (random) embedding.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PHASES = ("valid", "test")


@dataclass
class PhaseData:
    """What one phase trains on and whom it lists for.

    Attributes:
        train: the training interactions (``userId``, ``itemId`` as str, ``timestamp`` int), sorted by user, then
            timestamp, equal timestamps as the split's ``tie_break`` orders them (:func:`tie_break`): in the data
            file's order (the exported parts list their rows in it, train before valid) or by item id.
        users: the users to list for (those with an interaction in the target part), sorted.
        phase: ``"valid"`` or ``"test"``.
    """

    train: pd.DataFrame
    users: list[str]
    phase: str


def read_part(split_dir: Path, name: str) -> pd.DataFrame:
    """One exported part (``train``, ``valid``, ``test``) with string ids and integer timestamps."""
    frame = pd.read_csv(split_dir / f"{name}.csv", dtype={"userId": str, "itemId": str})
    frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce").fillna(0).astype("int64")
    return frame[["userId", "itemId", "timestamp"]]


def tie_break(split_dir: Path) -> str:
    """How the exported split ordered equal timestamps: its ``split.json``'s ``split.tie_break``, ``file_order`` (the
    default of fusionrec's temporal splits) when the manifest or the key is missing."""
    manifest = split_dir / "split.json"
    spec = json.loads(manifest.read_text()).get("split") if manifest.exists() else None
    return str((spec or {}).get("tie_break", "file_order"))


def phase_data(split_dir: Path, phase: str) -> PhaseData:
    """The training interactions and target users of ``phase`` (see the module docstring)."""
    if phase not in PHASES:
        raise SystemExit(f"phase must be one of {PHASES}, got {phase!r}")
    train = read_part(split_dir, "train")
    if phase == "test":
        train = pd.concat([train, read_part(split_dir, "valid")], ignore_index=True)
    keys = ["userId", "timestamp"] + (["itemId"] if tie_break(split_dir) == "item_id" else [])
    train = train.sort_values(keys, kind="stable").reset_index(drop=True)
    target = read_part(split_dir, phase)
    users = sorted(set(target["userId"]) & set(train["userId"]))
    return PhaseData(train, users, phase)


def top_k(scores: np.ndarray, known: list[np.ndarray], k: int) -> np.ndarray:
    """Top ``k`` column indices per row, best first, with each row's ``known`` columns and non-finite scores
    excluded; ``-1`` pads a row with fewer than ``k`` rankable columns."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[~np.isfinite(scores)] = -np.inf
    for row, cols in enumerate(known):
        scores[row, cols] = -np.inf
    take = min(k, scores.shape[1])
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    order = np.take_along_axis(scores, part, axis=1)
    # stable order: higher score first, then lower column index
    idx = np.lexsort((part, -order), axis=1)
    best = np.take_along_axis(part, idx, axis=1)
    best_scores = np.take_along_axis(order, idx, axis=1)
    best[np.isneginf(best_scores)] = -1
    out = np.full((scores.shape[0], k), -1, dtype=np.int64)
    out[:, :take] = best
    return out


def write_recs(target: Path, users: list[str], lists: list[list[str]]) -> int:
    """Write ``userId,itemId,rank`` (rank from 1) atomically; returns the number of rows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["userId", "itemId", "rank"])
            for user, items in zip(users, lists, strict=True):
                for rank, item in enumerate(items, start=1):
                    writer.writerow([user, item, rank])
                    rows += 1
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


def summary_line(
    library: str, args: Any, params: dict[str, Any], data: PhaseData, rows: int, fit_seconds: float, start: float
) -> str:
    """The adapter's one JSON line on stdout, which run.py reads (and keeps in the run's log)."""
    return json.dumps(
        {
            "library": library,
            "model": args.model,
            "phase": args.phase,
            "params": params,
            "epochs": args.epochs,
            "users": len(data.users),
            "rows": rows,
            "train_interactions": len(data.train),
            "fit_seconds": round(fit_seconds, 2),
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
