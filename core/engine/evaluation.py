"""The evaluation engine: full ranking for each evaluated user, known positives masked, metrics from the registry.

The protocol (docs/evaluation.md has it in full):

- **Known items are masked.** Ranking for ``valid`` masks each user's training items; ranking for ``test`` masks
  training and validation items (:func:`known_interactions`). A masked item is never recommended and never counts
  as a hit.
- **Candidates.** When the split restricts ranking (``split.valid_candidate_items`` for ``valid``,
  ``split.candidate_items`` for ``test``, as the cold-item protocol does), only those items are ranked; otherwise
  every item is.
- **Relevant items** of a user are the distinct items of their interactions in the part that can be ranked (not
  masked, among the candidates). **Evaluated users** are the users with at least one relevant item (optionally
  only those of a given subset); the others are counted in the protocol as ``skipped_users`` and not evaluated.
- The score function is called once per batch of users, the top ``max(K)`` items taken once per batch, and each
  metric plugin computes its per-user values from the hit matrix (corpus metrics such as coverage from the top
  items of every user). Reported values are means over users, with optional 95% percentile bootstrap intervals
  over users (seeded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fusionrec.core.assembly.config import parse_metric
from fusionrec.core.engine.two_stage import Seen, masked_top_k
from fusionrec.core.errors import ConfigError, FusionrecError, Problem, UnknownComponentError
from fusionrec.core.metric import Metric

if TYPE_CHECKING:
    from fusionrec.core.data import SplitData
    from fusionrec.registry import Registry

Part = Literal["valid", "test"]
PARTS: tuple[str, ...] = ("valid", "test")
ScoreFn = Callable[[npt.NDArray[np.int64]], torch.Tensor]
"""``score(users) → (len(users), n_items)`` float tensor, higher is better, for internal user ids."""

CONFIDENCE = 0.95
"""Level of the bootstrap intervals."""
_BOOTSTRAP_CELLS = 4_000_000
"""Resample counts drawn at once (bootstrap rows × users), bounding the bootstrap's memory."""
PROTOCOL_KEYS: tuple[str, ...] = (
    "part",
    "n_users",
    "skipped_users",
    "masked",
    "candidates",
    "n_items",
    "k",
    "metrics",
    "bootstrap",
    "seed",
)
"""The protocol entries the engine fills in; a caller's ``protocol`` may add others, not replace these."""


def known_interactions(split: SplitData, part: Part) -> pd.DataFrame:
    """The interactions known when predicting ``part``: ``train`` for ``valid``, ``train`` + ``valid`` for ``test``.

    The rows keep their columns and index labels (the parts are disjoint, so labels stay unique).
    """
    _check_part(part)
    if part == "valid":
        return split.train
    return pd.concat([split.train, split.valid])


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        part: ``"valid"`` or ``"test"``.
        metrics: ``"recall@20"`` → value: the mean over users of a per-user metric, or a corpus metric's value.
        per_user: per-user metric → ``(n_users,)`` float64 values, aligned with :attr:`users` (corpus metrics,
            such as coverage, have none).
        ci: per-user metric → 95% percentile bootstrap interval of the mean over users; empty when the bootstrap
            was off.
        users: the evaluated users (internal ids, ascending).
        protocol: how the numbers were obtained: ``part``, ``n_users``, ``skipped_users`` (users with interactions
            in the part of which none could be ranked), ``masked`` (``"train"`` or ``"train+valid"``),
            ``candidates`` (``"all items"`` or how many), ``n_items``, ``k`` (the cut-offs), ``metrics``,
            ``bootstrap`` (resamples, 0 when off), ``seed``, plus the caller's entries (dataset, split …).
    """

    part: str
    metrics: dict[str, float]
    per_user: dict[str, npt.NDArray[np.float64]]
    ci: dict[str, tuple[float, float]]
    users: npt.NDArray[np.int64]
    protocol: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON: part, metrics, ci (as ``[low, high]``), protocol, and ``per_user`` (the
        users and each per-user metric's values as lists; drop it for a compact summary)."""
        return {
            "part": self.part,
            "metrics": dict(self.metrics),
            "ci": {name: [low, high] for name, (low, high) in self.ci.items()},
            "protocol": dict(self.protocol),
            "per_user": {
                "users": self.users.tolist(),
                **{name: values.tolist() for name, values in self.per_user.items()},
            },
        }


def evaluate(
    score: ScoreFn,
    split: SplitData,
    part: Part,
    metrics: Sequence[str],
    n_items: int,
    *,
    registry: Registry | None = None,
    batch_size: int = 1024,
    bootstrap: int = 0,
    seed: int = 0,
    users: npt.NDArray[np.int64] | None = None,
    protocol: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Rank every candidate item for each evaluated user and measure the lists.

    Args:
        score: ``score(users)`` → ``(len(users), n_items)`` float tensor (any device), higher is better. It closes
            over the history the model should use (:func:`known_interactions`); the engine masks known items.
        split: the split; ``part`` picks the interactions that are relevant.
        part: ``"valid"`` or ``"test"``.
        metrics: metric names as ``name@K`` (``recall@20``); duplicates are measured once.
        n_items: catalogue size (item ids are ``0..n_items-1``).
        registry: where the metrics are registered (default: the process-wide registry).
        batch_size: users scored at once; memory is about ``batch_size × n_items`` floats (twice: the scores and
            the masked copy).
        bootstrap: resamples of the users for the 95% intervals (0: none).
        seed: seed of the bootstrap.
        users: evaluate only these users (those of them with a relevant item in ``part``).
        protocol: extra entries for :attr:`EvalResult.protocol` (dataset, split name …).

    Raises:
        ConfigError: a metric name is malformed (``UnknownComponentError``: not registered).
        FusionrecError: bad arguments, item ids outside the catalogue, no user to evaluate, or a score function
            or metric that returns the wrong shape or NaN.
    """
    extra = _check_arguments(part, n_items, batch_size, bootstrap, protocol)
    built = build_metrics(metrics, registry)

    known = _Pairs.of(known_interactions(split, part), n_items, f"the interactions known for {part}")
    target = split.valid if part == "valid" else split.test
    relevant = _Pairs.of(target, n_items, f"split.{part}")
    blocked, n_candidates = blocked_items(split, part, n_items)

    # relevant = distinct part items that can be ranked: not known to the user, among the candidates
    rankable = ~_member(relevant.keys, known.keys)
    if blocked is not None:
        rankable &= ~blocked[relevant.items]
    part_users = _sorted_unique(relevant.users)
    relevant = relevant.subset(rankable)
    evaluated = _sorted_unique(relevant.users)
    if users is not None:
        wanted = np.asarray(users)
        if wanted.ndim != 1 or not np.issubdtype(wanted.dtype, np.integer):
            raise FusionrecError(f"users must be a 1-D array of internal user ids, got {wanted.dtype} {wanted.shape}")
        evaluated = evaluated[np.isin(evaluated, wanted)]
        part_users = part_users[np.isin(part_users, wanted)]
    if len(evaluated) == 0:
        raise FusionrecError(
            f"no user to evaluate on {part}: {len(part_users)} user(s) have interactions in split.{part}"
            + (" (among the given users)" if users is not None else "")
            + ", and none of them has an item that can be ranked (every item known from "
            f"{'train' if part == 'valid' else 'train and valid'}, or outside the candidate items)"
        )

    per_user, results = _measure(score, built, relevant, evaluated, known, blocked, n_items, n_candidates, batch_size)
    ci = bootstrap_ci(per_user, bootstrap, seed) if bootstrap else {}
    facts: dict[str, Any] = {
        "part": part,
        "n_users": len(evaluated),
        "skipped_users": int(len(part_users) - len(evaluated)),
        "masked": "train" if part == "valid" else "train+valid",
        "candidates": "all items" if blocked is None else n_candidates,
        "n_items": n_items,
        "k": sorted({metric.k for _, metric in built}),
        "metrics": [name for name, _ in built],
        "bootstrap": bootstrap,
        "seed": seed,
    }
    return EvalResult(part, results, per_user, ci, evaluated.astype(np.int64), {**facts, **extra})


def _check_arguments(
    part: object, n_items: int, batch_size: int, bootstrap: object, protocol: Mapping[str, Any] | None
) -> dict[str, Any]:
    _check_part(part)
    _check_positive(n_items, "n_items")
    _check_positive(batch_size, "batch_size")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise FusionrecError(f"bootstrap must be a number of resamples ≥ 0 (0: no intervals), got {bootstrap!r}")
    extra = dict(protocol or {})
    clash = sorted(set(extra) & set(PROTOCOL_KEYS))
    if clash:
        raise FusionrecError(
            f"protocol entries {clash} are filled in by evaluate(); pass other keys (e.g. dataset, split)"
        )
    return extra


def _measure(
    score: ScoreFn,
    built: list[tuple[str, Metric]],
    relevant: _Pairs,
    evaluated: npt.NDArray[np.int64],
    known: _Pairs,
    blocked: npt.NDArray[np.bool_] | None,
    n_items: int,
    n_candidates: int,
    batch_size: int,
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, float]]:
    """Per-user values of the per-user metrics, and every metric's value."""
    k_max = max(metric.k for _, metric in built)
    per_user_metrics = [(name, m) for name, m in built if m.per_user]
    corpus_metrics = [(name, m) for name, m in built if not m.per_user]
    values: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name, _ in per_user_metrics}
    tops: list[npt.NDArray[np.int64]] = []
    for batch_users, top in _ranked(score, evaluated, known, blocked, k_max, n_items, batch_size):
        rows, items = relevant.rows_of(batch_users)
        n_relevant = np.bincount(rows, minlength=len(batch_users))
        keys = np.arange(len(batch_users), dtype=np.int64)[:, None] * n_items + top
        hits = _member(keys, rows * n_items + items) & (top >= 0)
        hits_t, n_relevant_t = torch.from_numpy(hits), torch.from_numpy(n_relevant.astype(np.int64))
        for name, metric in per_user_metrics:
            values[name].append(_per_user_values(metric, name, hits_t, n_relevant_t))
        if corpus_metrics:
            tops.append(top)

    per_user = {name: np.concatenate(chunks) for name, chunks in values.items()}
    results: dict[str, float] = {}
    for name, metric in built:
        if metric.per_user:
            results[name] = float(per_user[name].mean())
        else:
            results[name] = _corpus_value(metric, name, np.concatenate(tops), n_candidates)
    return per_user, results


def top_k(
    score: ScoreFn,
    users: npt.NDArray[np.int64],
    split: SplitData,
    part: Part,
    k: int,
    n_items: int,
    batch_size: int = 1024,
) -> npt.NDArray[np.int64]:
    """The top ``k`` items of each user, ranked as :func:`evaluate` ranks them (same masking and candidates).

    Returns:
        ``(len(users), k)`` int64 item ids, best first, in the order of ``users``; ``-1`` pads a row when fewer
        than ``k`` items can be ranked for that user.
    """
    _check_part(part)
    _check_positive(k, "k")
    _check_positive(n_items, "n_items")
    _check_positive(batch_size, "batch_size")
    wanted = np.asarray(users)
    if wanted.ndim != 1 or not np.issubdtype(wanted.dtype, np.integer):
        raise FusionrecError(f"users must be a 1-D array of internal user ids, got {wanted.dtype} {wanted.shape}")
    known = _Pairs.of(known_interactions(split, part), n_items, f"the interactions known for {part}")
    blocked, _ = blocked_items(split, part, n_items)
    out = np.full((len(wanted), k), -1, dtype=np.int64)
    start = 0
    for batch_users, top in _ranked(score, wanted.astype(np.int64), known, blocked, k, n_items, batch_size):
        out[start : start + len(batch_users)] = top
        start += len(batch_users)
    return out


def build_metrics(names: Sequence[str], registry: Registry | None = None) -> list[tuple[str, Metric]]:
    """Parse ``name@K`` names and build each metric once, in the given order (duplicates dropped).

    Raises:
        ConfigError: a name is not of the form ``name@K``, or (``UnknownComponentError``) no metric is registered
            under it; problems are reported at ``evaluate.metrics[i]``.
    """
    if isinstance(names, str):
        raise FusionrecError(f"metrics must be a list of names such as ['recall@20'], got the string {names!r}")
    if registry is None:
        from fusionrec.registry import get_registry

        registry = get_registry()
    table = registry.table("metric")
    if not names:
        raise FusionrecError("no metric to compute: give at least one, e.g. ['recall@20', 'ndcg@20']")
    problems: list[Problem] = []
    parsed: dict[str, tuple[str, int]] = {}
    for i, name in enumerate(names):
        found = parse_metric(name) if isinstance(name, str) else None
        if found is None:
            problems.append(
                Problem(("evaluate", "metrics", i), f"metrics are written name@K (e.g. recall@20), got {name!r}.")
            )
        elif found[0] not in table:
            problems.append(Problem(("evaluate", "metrics", i), table.unknown_message(found[0]), unknown_name=True))
        else:
            parsed.setdefault(name, found)
    if problems:
        error = UnknownComponentError if all(p.unknown_name for p in problems) else ConfigError
        raise error(problems)
    built: list[tuple[str, Metric]] = []
    for full, (bare, k) in parsed.items():
        metric = registry.create("metric", bare, {"k": k})
        if not isinstance(metric, Metric):
            raise FusionrecError(
                f"metric '{bare}' built a {type(metric).__name__}, not a fusionrec.core.metric.Metric; "
                f"the plugin {table[bare].origin} is broken"
            )
        built.append((full, metric))
    return built


def bootstrap_ci(
    per_user: Mapping[str, npt.NDArray[np.float64]], samples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap intervals of the mean over users, one per metric.

    Each resample draws as many users as there are, with replacement (the same draw for every metric, so the
    intervals are paired); the interval is the 2.5th and 97.5th percentile of the resampled means. The same
    ``seed`` and users give the same intervals.
    """
    if not per_user or samples <= 0:
        return {}
    names = list(per_user)
    stacked = np.stack([np.asarray(per_user[name], dtype=np.float64) for name in names], axis=1)
    n = stacked.shape[0]
    rng = np.random.default_rng(seed)
    means = np.empty((samples, len(names)))
    chunk = max(1, _BOOTSTRAP_CELLS // max(n, 1))
    uniform = np.full(n, 1.0 / n)
    for start in range(0, samples, chunk):
        rows = min(chunk, samples - start)
        counts = rng.multinomial(n, uniform, size=rows)  # how often each user is drawn, per resample
        means[start : start + rows] = counts @ stacked / n
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return {name: (float(low[j]), float(high[j])) for j, name in enumerate(names)}


def paired_bootstrap(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], samples: int, seed: int
) -> dict[str, float]:
    """Paired bootstrap of two systems' per-user values of one metric (the same users, in the same order).

    Each resample draws users with replacement and takes both systems' means over the same draw, so the interval
    of the difference (and of the ratio) reflects the users both were measured on, not two independent intervals.

    Returns:
        ``a`` and ``b`` (the means), ``difference`` (b − a) with its 95% interval ``difference_low``/``_high``,
        ``ratio`` (b / a) with ``ratio_low``/``_high``, ``p_not_better``: the share of resamples where b ≤ a (a
        one-sided bootstrap p-value for "b is better"), ``users`` and ``samples``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired values need the same users: got shapes {a.shape} and {b.shape}")
    n = len(a)
    rng = np.random.default_rng(seed)
    stacked = np.stack([a, b], axis=1)
    means = np.empty((samples, 2))
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    uniform = np.full(n, 1.0 / n)
    for start in range(0, samples, chunk):
        rows = min(chunk, samples - start)
        means[start : start + rows] = rng.multinomial(n, uniform, size=rows) @ stacked / n
    difference = means[:, 1] - means[:, 0]
    ratio = np.divide(means[:, 1], means[:, 0], out=np.full(samples, np.nan), where=means[:, 0] > 0)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    d_low, d_high = np.percentile(difference, [tail, 100 - tail])
    r_low, r_high = np.nanpercentile(ratio, [tail, 100 - tail]) if np.isfinite(ratio).any() else (np.nan, np.nan)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return {
        "a": mean_a,
        "b": mean_b,
        "difference": mean_b - mean_a,
        "difference_low": float(d_low),
        "difference_high": float(d_high),
        "ratio": mean_b / mean_a if mean_a > 0 else float("nan"),
        "ratio_low": float(r_low),
        "ratio_high": float(r_high),
        "p_not_better": float((difference <= 0).mean()),
        "users": n,
        "samples": samples,
    }


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Pairs:
    """Distinct (user, item) pairs, sorted by user then item, with their ``user * n_items + item`` keys."""

    keys: npt.NDArray[np.int64]
    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]

    @classmethod
    def of(cls, rows: pd.DataFrame, n_items: int, what: str) -> _Pairs:
        users = rows["user"].to_numpy(dtype=np.int64)
        items = rows["item"].to_numpy(dtype=np.int64)
        _check_ids(users, None, what, "user")
        _check_ids(items, n_items, what, "item")
        keys = _sorted_unique(users * n_items + items)
        return cls(keys, keys // n_items, keys % n_items)

    def subset(self, keep: npt.NDArray[np.bool_]) -> _Pairs:
        return _Pairs(self.keys[keep], self.users[keep], self.items[keep])

    def rows_of(self, users: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(rows, items)``: every pair of each of ``users``, ``rows`` being the position in ``users``."""
        left = np.searchsorted(self.users, users, side="left")
        counts = np.searchsorted(self.users, users, side="right") - left
        total = int(counts.sum())
        rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.items[np.repeat(left, counts) + offsets]


def _ranked(
    score: ScoreFn,
    users: npt.NDArray[np.int64],
    known: _Pairs,
    blocked: npt.NDArray[np.bool_] | None,
    k: int,
    n_items: int,
    batch_size: int,
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Per batch of users: the users and their ``(batch, k)`` top items (masked, ``-1`` padded)."""
    take = min(k, n_items)
    blocked_on: dict[torch.device, torch.Tensor] = {}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = _scores(score, batch, n_items)
        device = scores.device
        if blocked is not None:
            if device not in blocked_on:
                blocked_on[device] = torch.from_numpy(blocked).to(device)
            scores.masked_fill_(blocked_on[device], float("-inf"))
        best, index = masked_top_k(scores, Seen(*known.rows_of(batch)), take)
        nan = torch.isnan(best).any(dim=1)  # topk ranks NaN above every number: a NaN score shows up here
        if nan.any():
            first = int(batch[int(nan.nonzero()[0, 0])])
            raise FusionrecError(
                f"the score function returned NaN scores (first for user {first}); scores must be numbers"
            )
        top = np.full((len(batch), k), -1, dtype=np.int64)
        top[:, :take] = index.cpu().numpy()
        yield batch, top


def _scores(score: ScoreFn, users: npt.NDArray[np.int64], n_items: int) -> torch.Tensor:
    """Call the score function and check what it returns; a float copy the engine may modify in place."""
    out: Any = score(users)
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise FusionrecError(
            f"the score function returned a {type(out).__name__}; it must return a torch.Tensor of shape "
            f"(len(users), n_items) = ({len(users)}, {n_items})"
        )
    if tuple(out.shape) != (len(users), n_items):
        raise FusionrecError(
            f"the score function returned shape {tuple(out.shape)} for {len(users)} users; expected "
            f"(len(users), n_items) = ({len(users)}, {n_items}): one score per item for each user"
        )
    scores: torch.Tensor = out.detach()
    return scores.clone() if torch.is_floating_point(scores) else scores.to(torch.float32)


def _per_user_values(metric: Metric, name: str, hits: torch.Tensor, n_relevant: torch.Tensor) -> npt.NDArray[Any]:
    out = metric.compute(hits, n_relevant)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (hits.shape[0],):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FusionrecError(
            f"metric {name}: compute() returned {shape}, expected a tensor of shape ({hits.shape[0]},)"
        )
    values = out.detach().to("cpu", torch.float64).numpy()
    if np.isnan(values).any():
        raise FusionrecError(f"metric {name}: compute() returned NaN")
    return values


def _corpus_value(metric: Metric, name: str, top: npt.NDArray[np.int64], n_candidates: int) -> float:
    value = metric.corpus(torch.from_numpy(top), n_candidates)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FusionrecError(f"metric {name}: corpus() returned {type(value).__name__}, expected a number") from None


def _sorted_unique(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct values, ascending (a sort and a diff: faster than ``np.unique`` on int64 keys)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _member(values: npt.NDArray[np.int64], ascending: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether each of ``values`` (any shape) is in ``ascending`` (sorted, distinct)."""
    if len(ascending) == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.searchsorted(ascending, values).clip(max=len(ascending) - 1)
    found: npt.NDArray[np.bool_] = ascending[at] == values
    return found


def blocked_items(split: SplitData, part: str, n_items: int) -> tuple[npt.NDArray[np.bool_] | None, int]:
    """A mask of the items that may not be ranked in ``part`` (``None``: all may), and how many may."""
    candidates = split.valid_candidate_items if part == "valid" else split.candidate_items
    if candidates is None:
        return None, n_items
    field = "valid_candidate_items" if part == "valid" else "candidate_items"
    ids = np.unique(np.asarray(candidates, dtype=np.int64))
    _check_ids(ids, n_items, f"split.{field}", "item")
    blocked = np.ones(n_items, dtype=bool)
    blocked[ids] = False
    return blocked, len(ids)


def _check_ids(ids: npt.NDArray[np.int64], n: int | None, what: str, kind: str) -> None:
    if len(ids) == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (n is not None and high >= n):
        bad = low if low < 0 else high
        limit = f"0..{n - 1}" if n is not None else "≥ 0"
        raise FusionrecError(
            f"{what}: {kind} id {bad} is outside the internal ids ({limit}); pass the catalogue's n_items and "
            "interactions in internal ids"
        )


def _check_part(part: object) -> None:
    if part not in PARTS:
        raise FusionrecError(f"part must be 'valid' or 'test', got {part!r}")


def _check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FusionrecError(f"{name} must be a positive integer, got {value!r}")
