"""The built-in ranking metrics plugin: Recall, NDCG, HitRate, MRR, Precision, MAP and item coverage at K.

Light on purpose: a parameter model per metric (its docstring is the formula the component reference shows) and
one hook registering lazy factories; torch is imported only when a metric is built
(:mod:`fusionrec.plugins.metrics.top_k_impl`). K comes from the pipeline's ``name@K``.
"""

from __future__ import annotations

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl

IMPLEMENTATION = "fusionrec.plugins.metrics.top_k_impl"


class RecallParams(Params):
    """Recall@K = hits in the top K / number of relevant items (RecBole's convention: the denominator is not capped
    at K, so a user with more than K relevant items cannot reach 1)."""


class NDCGParams(Params):
    """NDCG@K with binary relevance: DCG = Σ_{i≤K} rel_i / log2(i + 1), divided by the ideal DCG of
    min(n_relevant, K) hits at the top ranks."""


class HitRateParams(Params):
    """HitRate@K = 1[Σ_{i≤K} rel_i > 0] (also called Hit@K); averaged over users, the share of users with at least
    one relevant item in their top K."""


class MRRParams(Params):
    """MRR@K = 1 / rank of the first relevant item in the top K (0 when there is none); averaged over users."""


class PrecisionParams(Params):
    """Precision@K = hits in the top K / K."""


class MAPParams(Params):
    """MAP@K: average precision AP@K = (1 / min(n_relevant, K)) Σ_{i≤K} precision@i · rel_i, averaged over users."""


class CoverageParams(Params):
    """Item coverage@K = distinct items in all evaluated users' top K / number of items that could be ranked (the
    catalogue, or the protocol's candidate items). One value for the whole evaluation, not a per-user mean."""


METRICS: dict[str, tuple[str, type[Params]]] = {
    "recall": ("Recall", RecallParams),
    "ndcg": ("NDCG", NDCGParams),
    "hit_rate": ("HitRate", HitRateParams),
    "mrr": ("MRR", MRRParams),
    "precision": ("Precision", PrecisionParams),
    "map": ("MAP", MAPParams),
    "coverage": ("ItemCoverage", CoverageParams),
}
"""Registered name → (implementation class, parameter model)."""


@hookimpl
def register_metrics(register: Register) -> None:
    for name, (cls, params) in METRICS.items():
        register(name, f"{IMPLEMENTATION}:{cls}", params=params)
