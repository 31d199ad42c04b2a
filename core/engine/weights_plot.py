"""The per-item modality-weight histogram of a run: whether the fuser uses every modality or collapsed onto one.

A fuser's weights (``item_weights.npy`` in a run directory, ``(n_items, n_modalities)``, each row summing to 1
over the item's present modalities) say how much each modality contributed to each item's vector. Their mean
alone hides a collapse's shape; the histogram shows it: a fuser that collapsed onto text has every item's text
weight at 1 and every image weight at 0.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import DataError
from fusionrec.core.io import atomic_write

BINS = 20
"""Bins of the histogram over [0, 1]."""
COLLAPSED = 0.01
"""A modality whose weight is below this for an item barely contributes to it."""


def weight_summary(weights: npt.ArrayLike, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per modality: the mean and median weight over items, and the share of items where it is below 0.01 / above 0.99.

    Args:
        weights: ``(n_items, n_modalities)`` per-item modality weights, in ``[0, 1]``.
        names: the modality of each column.

    Raises:
        DataError: ``weights`` is not a finite 2-D array in [0, 1] with one column per name.
    """
    w = _checked(weights, names)
    summary = {}
    for j, name in enumerate(names):
        column = w[:, j]
        summary[name] = {
            "mean": float(column.mean()) if len(column) else float("nan"),
            "median": float(np.median(column)) if len(column) else float("nan"),
            "below_0.01": float((column < COLLAPSED).mean()) if len(column) else float("nan"),
            "above_0.99": float((column > 1.0 - COLLAPSED).mean()) if len(column) else float("nan"),
        }
    return summary


def modality_weight_histogram(weights: npt.ArrayLike, names: Sequence[str], path: str | Path) -> dict[str, Any]:
    """Write a PNG histogram of each modality's per-item weight to ``path`` (atomically) and return its summary.

    One panel per modality, 20 bins over [0, 1], the mean marked; the title says how many items each modality
    barely touches (weight below 0.01).

    Args:
        weights: ``(n_items, n_modalities)`` per-item modality weights (a run's ``item_weights.npy``).
        names: the modality of each column (the fuser's modality order).
        path: where the PNG goes.

    Returns:
        :func:`weight_summary` of the weights.

    Raises:
        DataError: bad weights (see :func:`weight_summary`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = _checked(weights, names)
    summary = weight_summary(w, names)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), dpi=120, squeeze=False)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    for j, (name, ax) in enumerate(zip(names, axes[0], strict=True)):
        ax.hist(w[:, j], bins=edges, color=f"C{j}")
        mean = summary[name]["mean"]
        ax.axvline(mean, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: mean {mean:.3f}, {summary[name]['below_0.01']:.0%} of items < 0.01", fontsize=8)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("weight")
    axes[0][0].set_ylabel("items")
    fig.suptitle(f"per-item modality weights ({len(w)} items)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue()))
    return summary


def _checked(weights: npt.ArrayLike, names: Sequence[str]) -> npt.NDArray[np.float64]:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(names) or not names:
        raise DataError(
            f"modality weights must be an (n_items, {len(names)}) array, one column per modality {list(names)}; "
            f"got shape {w.shape}"
        )
    if not np.isfinite(w).all() or (w < -1e-6).any() or (w > 1.0 + 1e-6).any():
        raise DataError("modality weights must be finite and in [0, 1] (a fuser's softmax weights)")
    return w


__all__ = ["modality_weight_histogram", "weight_summary"]
