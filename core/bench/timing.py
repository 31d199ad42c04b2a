"""Timing two ways of doing the same work on a shared machine: take turns, keep every sample, compare medians.

These machines' speed drifts within minutes (other jobs, CPU frequency), so the ways compared never run in blocks
of their own: :func:`alternate` rotates who goes first every round, and :func:`paired_calls` times both ways on
each input back to back. Every sample is kept, so a report can show the spread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def alternate(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each call in each of ``rounds`` rounds; the order rotates every round so all see the same drift."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


Names = tuple[str, str]


def compare(count: int, base: list[float], other: list[float], names: Names = ("base", "other")) -> dict[str, Any]:
    """``count`` queries per round done in ``base`` and ``other`` seconds per round: ``{name}_qps`` from the
    medians, ``ratio`` = other's rate / base's rate (and its spread over the rounds), every round's seconds."""
    base_s, other_s = statistics.median(base), statistics.median(other)
    pairs = [b / o for b, o in zip(base, other, strict=True)]
    return {
        "queries": count,
        f"{names[0]}_qps": count / base_s,
        f"{names[1]}_qps": count / other_s,
        "ratio": base_s / other_s,
        "ratio_per_round": {"min": min(pairs), "median": statistics.median(pairs), "max": max(pairs)},
        f"{names[0]}_s": base,
        f"{names[1]}_s": other,
    }


def paired_calls(
    base: Callable[[int], object],
    other: Callable[[int], object],
    count: int,
    rounds: int,
    names: Names = ("base", "other"),
) -> dict[str, Any]:
    """Inputs ``0..count-1`` done by ``base`` and by ``other`` back to back (who goes first alternating), ``rounds``
    times: :func:`compare` on the round totals, plus each side's median seconds per call (preemptions distort it
    least) and their difference, ``other``'s own cost per call."""
    clock = time.perf_counter
    base_rounds, other_rounds, base_each, other_each = [], [], [], []
    for round_ in range(rounds):
        base_total = other_total = 0.0
        for row in range(count):
            if (row + round_) % 2:
                t0 = clock()
                other(row)
                t1 = clock()
                base(row)
                t2 = clock()
                spent_other, spent_base = t1 - t0, t2 - t1
            else:
                t0 = clock()
                base(row)
                t1 = clock()
                other(row)
                t2 = clock()
                spent_base, spent_other = t1 - t0, t2 - t1
            base_total += spent_base
            other_total += spent_other
            base_each.append(spent_base)
            other_each.append(spent_other)
        base_rounds.append(base_total)
        other_rounds.append(other_total)
    base_p50, other_p50 = statistics.median(base_each), statistics.median(other_each)
    return {
        **compare(count, base_rounds, other_rounds, names),
        f"{names[0]}_p50_us": base_p50 * 1e6,
        f"{names[1]}_p50_us": other_p50 * 1e6,
        "ratio_p50": base_p50 / other_p50,
        "overhead_p50_us": (other_p50 - base_p50) * 1e6,
    }


def seconds_per_call(call: Callable[[int], object], available: int, probe: int = 5) -> float:
    """Mean seconds of ``call(0..probe-1)`` (a warm-up that also sizes the timed runs)."""
    probe = max(1, min(probe, available))
    start = time.perf_counter()
    for row in range(probe):
        call(row)
    return (time.perf_counter() - start) / probe


def calls_for(seconds: float, available: int, target_s: float, least: int, most: int) -> int:
    """How many calls of ``seconds`` each fill about ``target_s``, between ``least`` and ``most`` (and available)."""
    wanted = int(target_s / max(seconds, 1e-7))
    return max(1, min(available, most, max(least, wanted)))
