"""The metric contract, run by :func:`fusionrec.registry.testing.check_component` for every metric.

Built with ``k`` from the context (10 by default), the factory must return a
:class:`~fusionrec.core.metric.Metric` whose ``k`` is that ``k``.

A **per-user** metric (``per_user`` true) is given seeded random hit matrices with more columns than ``k``
(``K' = k + 5``; each user has 1 to ``2k`` relevant items and never more hits than that): ``compute`` returns a
``(users,)`` float tensor of finite values; it gives the same values twice and leaves its inputs unchanged; only the
first ``k`` columns count (changing the others, or passing exactly ``k`` columns, changes nothing); each user's
value depends on that user's row alone; fewer than ``k`` columns is an error (``ValueError`` or a
``FusionrecError``).

A **corpus** metric (``per_user`` false, e.g. item coverage) is given ``(users, k + 5)`` top-item lists with ``-1``
padding: ``corpus`` returns a finite number, the same twice, and only the first ``k`` columns count.

Metrics named like the built-ins (``recall``, ``ndcg``, ``hit_rate``, ``mrr``, ``precision``, ``map``,
``coverage``, with or without a plugin prefix: ``acme.hit_rate``) must also mean what the name says: values in
[0, 1]; a perfect ranking (the first ``min(n_relevant, k)`` ranks all hits, ``n_relevant ≤ k``) gives 1 for
recall, NDCG, hit rate, MRR and MAP, and precision is 1 when all ``k`` ranks are hits; no hit gives 0; coverage is
the share of the candidates that appear in some list.

torch is imported only when the contract runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

if TYPE_CHECKING:
    import torch

BAD_INPUT = (ValueError, FusionrecError)
"""What a metric may raise for bad input."""
BOUNDED = frozenset({"recall", "ndcg", "hit_rate", "mrr", "precision", "map", "coverage"})
"""Names (after any plugin prefix) whose values must lie in [0, 1] and follow the usual definitions."""
PERFECT_IS_ONE = frozenset({"recall", "ndcg", "hit_rate", "mrr", "map"})
"""Names for which a perfect ranking of at most ``k`` relevant items scores 1."""
USERS, EXTRA = 40, 5


def metric_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    from fusionrec.core.metric import Metric

    label = f"metric {spec.type!r}"
    metric = registry.build(spec, **context)
    assert isinstance(metric, Metric), f"{label}: the factory must return a fusionrec.core.metric.Metric"
    k = int(context["k"])
    assert metric.k == k, f"{label}: built with k={k}, its k is {metric.k!r}"
    assert isinstance(metric.per_user, bool), f"{label}: per_user must be a bool, got {metric.per_user!r}"
    bare = spec.type.rsplit(".", 1)[-1]
    if metric.per_user:
        _per_user(metric, label, bare, k)
    else:
        _corpus(metric, label, bare, k)
    return metric


def _per_user(metric: Any, label: str, bare: str, k: int) -> None:
    import torch

    hits, n_relevant = random_hits(USERS, k + EXTRA, 2 * k, seed=0)
    before = (hits.clone(), n_relevant.clone())
    values = _compute(metric, label, hits, n_relevant)
    assert torch.equal(hits, before[0]) and torch.equal(n_relevant, before[1]), f"{label}: compute() changed its inputs"
    assert torch.equal(_compute(metric, label, hits, n_relevant), values), f"{label}: two calls give different values"

    # only the first k columns count
    flipped = hits.clone()
    flipped[:, k:] = ~flipped[:, k:]
    assert torch.allclose(_compute(metric, label, flipped, n_relevant), values, atol=1e-6), (
        f"{label}: columns beyond k={k} changed the values"
    )
    exact = _compute(metric, label, hits[:, :k].contiguous(), n_relevant)
    assert torch.allclose(exact, values, atol=1e-6), f"{label}: exactly k columns gives other values than k + {EXTRA}"
    try:
        metric.compute(hits[:, : k - 1], n_relevant)
    except BAD_INPUT:
        pass
    else:
        raise AssertionError(f"{label}: a hit matrix with fewer than k={k} columns was accepted")

    # a user's value depends on that user alone
    rows = torch.tensor([5, 0, 17, 17, 3])
    alone = _compute(metric, label, hits[rows], n_relevant[rows])
    assert torch.allclose(alone, values[rows], atol=1e-6), f"{label}: a user's value depends on the other users"

    if bare not in BOUNDED:
        return
    assert ((values >= 0) & (values <= 1 + 1e-6)).all(), f"{label}: values outside [0, 1]: {values.tolist()}"
    none = _compute(metric, label, torch.zeros_like(hits), n_relevant)
    assert torch.all(none == 0), f"{label}: a list with no hit must score 0, got {none.tolist()}"
    n_small = torch.arange(USERS) % k + 1  # 1..k relevant items, all ranked first
    perfect = torch.arange(k + EXTRA)[None, :] < n_small[:, None]
    best = _compute(metric, label, perfect, n_small)
    if bare in PERFECT_IS_ONE:
        assert torch.allclose(best, torch.ones_like(best), atol=1e-6), (
            f"{label}: a perfect ranking must score 1, got {best.tolist()}"
        )
    if bare == "precision":
        full = torch.ones_like(hits)
        top = _compute(metric, label, full, torch.full((USERS,), k + EXTRA))
        assert torch.allclose(top, torch.ones_like(top), atol=1e-6), f"{label}: k hits in k ranks must score 1"


def _corpus(metric: Any, label: str, bare: str, k: int) -> None:
    import torch

    n_candidates = 50
    gen = torch.Generator().manual_seed(0)
    top = torch.randint(0, n_candidates, (USERS, k + EXTRA), generator=gen)
    top[::4, k // 2 :] = -1  # short lists, padded
    before = top.clone()
    value = _corpus_value(metric, label, top, n_candidates)
    assert torch.equal(top, before), f"{label}: corpus() changed its input"
    assert _corpus_value(metric, label, top, n_candidates) == value, f"{label}: two calls give different values"
    changed = top.clone()
    changed[:, k:] = (changed[:, k:] + 1) % n_candidates
    assert abs(_corpus_value(metric, label, changed, n_candidates) - value) < 1e-9, (
        f"{label}: columns beyond k={k} changed the value"
    )
    if bare not in BOUNDED:
        return
    assert 0 <= value <= 1, f"{label}: value {value} outside [0, 1]"
    if bare == "coverage":
        expected = len(set(top[:, :k].flatten().tolist()) - {-1}) / n_candidates
        assert abs(value - expected) < 1e-9, f"{label}: coverage {value}, expected {expected} (distinct / candidates)"
        covered = torch.full((n_candidates, k + EXTRA), -1)
        covered[:, 0] = torch.arange(n_candidates)  # every candidate first in one list
        assert abs(_corpus_value(metric, label, covered, n_candidates) - 1.0) < 1e-9, (
            f"{label}: lists covering every candidate must give 1"
        )


def random_hits(users: int, columns: int, max_relevant: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded hit matrices that could come from a ranking: ``(users, columns)`` bool hits and ``(users,)`` int64
    numbers of relevant items (1 to ``max_relevant``), never fewer relevant items than hits."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    n_relevant = torch.randint(1, max_relevant + 1, (users,), generator=gen)
    hits = torch.rand(users, columns, generator=gen) < 0.3
    # keep at most n_relevant hits per row: drop the ones past the allowed count
    hits &= hits.cumsum(dim=1) <= n_relevant[:, None]
    hits[0] = False  # a user with no hit
    hits[1, :] = torch.arange(columns) < n_relevant[1].clamp(max=columns)  # a perfect list
    return hits, n_relevant.to(torch.int64)


def _compute(metric: Any, label: str, hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    import torch

    out = metric.compute(hits, n_relevant)
    assert isinstance(out, torch.Tensor), f"{label}: compute() must return a torch.Tensor, got {type(out).__name__}"
    assert out.shape == (hits.shape[0],), f"{label}: compute() returned shape {tuple(out.shape)}, expected (users,)"
    assert torch.is_floating_point(out), f"{label}: compute() returned {out.dtype}, expected a float tensor"
    assert torch.isfinite(out).all(), f"{label}: compute() returned NaN or inf: {out.tolist()}"
    return out


def _corpus_value(metric: Any, label: str, top: torch.Tensor, n_candidates: int) -> float:
    value = metric.corpus(top, n_candidates)
    assert isinstance(value, int | float) and not isinstance(value, bool), (
        f"{label}: corpus() must return a number, got {type(value).__name__}"
    )
    assert value == value and abs(value) != float("inf"), f"{label}: corpus() returned {value}"
    return float(value)
