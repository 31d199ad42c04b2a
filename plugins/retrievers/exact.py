"""The ``exact`` retriever plugin: brute-force search, the reference and the small-catalogue default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class ExactParams(Params):
    """Exact nearest-neighbour search: a batched matrix product of queries and all item vectors (numpy)."""

    metric: Literal["ip", "l2", "cosine"] = Field(
        "ip",
        description="Similarity: ip (inner product), l2 (negative squared Euclidean distance) or cosine "
        "(inner product of L2-normalised vectors). Higher scores are better for all three.",
    )
    batch_size: int = Field(
        1024, gt=0, description="Queries scored per matrix product (bounds memory: batch_size × items floats)."
    )


@hookimpl
def register_retrievers(register: Register) -> None:
    register("exact", "fusionrec.plugins.retrievers.exact_impl:ExactRetriever", params=ExactParams)
