"""Two runs compared user by user: the paired bootstrap a claim like "1.2× the baseline" needs.

Each finished run keeps every evaluated user's metrics (``per_user.csv``, written by the ``evaluate`` stage and
checksummed in the manifest). :func:`compare_runs` joins two runs' values on the users both evaluated and
resamples users once for both, so the interval of the difference (and of the ratio) is that of the paired
comparison, narrower and more honest than two overlapping intervals read side by side.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusionrec.core.engine.evaluation import paired_bootstrap
from fusionrec.core.engine.rundir import RunDir, RunError
from fusionrec.core.engine.stages import PER_USER

DEFAULT_METRICS = ("recall@20", "ndcg@20")


def per_user(run: str | Path, part: str = "test") -> pd.DataFrame:
    """A finished run's per-user metrics on ``part`` (``user`` as a string column, one column per metric).

    Raises:
        RunError: not a run, the file is missing (a run evaluated before it existed), or it changed after the run.
    """
    rundir = RunDir.open(Path(run))
    if not (rundir.path / PER_USER).exists():
        raise RunError(
            f"{run}: no {PER_USER} (the run was evaluated by an older fusionrec); redo its evaluation with "
            f"`fusionrec run PIPELINE.yaml --out {run} --redo evaluate`"
        )
    text = rundir.file(PER_USER).read_text(encoding="utf-8")
    frame = pd.read_csv(io.StringIO(text), dtype={"user": str, "part": str})
    parts = sorted(frame["part"].unique())
    if part not in parts:
        raise RunError(f"{run}: {PER_USER} has no {part!r} rows (parts: {', '.join(parts)})")
    return frame[frame["part"] == part].drop(columns="part").set_index("user")


def compare_runs(
    a: str | Path,
    b: str | Path,
    *,
    part: str = "test",
    metrics: Sequence[str] = DEFAULT_METRICS,
    samples: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run ``b`` against run ``a`` on ``part``, one row per metric (see :func:`paired_bootstrap`: ``a``, ``b``,
    ``difference`` and ``ratio`` with 95% intervals, ``p_not_better``).

    Raises:
        RunError: a run lacks per-user metrics, a metric, or the two runs did not evaluate the same users.
    """
    left, right = per_user(a, part), per_user(b, part)
    if set(left.index) != set(right.index):
        common = len(set(left.index) & set(right.index))
        raise RunError(
            f"{a} and {b} evaluated different users on {part} ({len(left)} and {len(right)}, {common} in common): "
            "compare runs made on the same data and split"
        )
    right = right.loc[left.index]
    rows = []
    for metric in metrics:
        for run, frame in ((a, left), (b, right)):
            if metric not in frame.columns:
                known = ", ".join(c for c in frame.columns)
                raise RunError(f"{run}: no per-user {metric!r} (it has {known}); add it to evaluate.metrics")
        result = paired_bootstrap(left[metric].to_numpy(), right[metric].to_numpy(), samples, seed)
        rows.append({"metric": metric, "part": part, **result})
    return rows


__all__ = ["DEFAULT_METRICS", "compare_runs", "per_user"]
