"""The ``faiss`` retriever plugin: any FAISS index_factory string, on the CPU or (when available) the GPU.

faiss itself is imported only when a ``faiss`` block is validated (to check the factory string) or built, so
``fusionrec plugins`` and pipelines without a FAISS retriever never load it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl

PROBE_DIMS = (1024, 960, 840)
"""Dimensions a factory string is tried on when validated: divisible by the usual PQ/OPQ sub-quantizer counts."""


class FaissParams(Params):
    """Approximate (or exact) search with a FAISS index built from an index_factory string; external ids kept."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"index": "Flat", "metric": "ip"}]})

    index: str = Field(
        "Flat",
        min_length=1,
        description="FAISS index_factory string, passed verbatim: Flat, HNSW32, IVF1024,Flat, IVF1024,PQ16, "
        "OPQ16_64,IVF4096,PQ16, …",
    )
    search: str = Field(
        "",
        description="Search-time parameters, passed verbatim to faiss.ParameterSpace: 'nprobe=16', 'efSearch=64', "
        "comma-separated for several.",
    )
    metric: Literal["ip", "l2", "cosine"] = Field(
        "ip",
        description="Similarity: ip (inner product), l2 (scores are negative squared distances) or cosine "
        "(inner product of L2-normalised vectors).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: the GPU when faiss has GPU support and sees a device (faiss-gpu), else the CPU; cpu; "
        "cuda (an error without a GPU).",
    )
    threads: int | None = Field(
        None, gt=0, description="OpenMP threads FAISS uses (faiss.omp_set_num_threads); null keeps its default."
    )
    train_sample: int = Field(
        100_000, gt=0, description="Vectors sampled (seeded) to train indexes that need training (IVF, PQ, …)."
    )
    seed: int = Field(0, ge=0, description="Seed of the training sample.")

    @field_validator("index")
    @classmethod
    def _factory_string_parses(cls, value: str) -> str:
        import faiss  # lazy: ~0.1 s, paid only by pipelines that use this retriever

        last: Exception | None = None
        for dim in PROBE_DIMS:
            try:
                faiss.index_factory(dim, value)
            except RuntimeError as exc:
                last = exc
            else:
                return value
        reason = str(last).rsplit("Error: ", 1)[-1].strip() if last is not None else ""
        raise ValueError(
            f"FAISS cannot build the index {value!r}: {reason}. Use an index_factory string such as 'Flat', "
            "'HNSW32' or 'IVF1024,Flat' (https://github.com/facebookresearch/faiss/wiki/The-index-factory)"
        )


@hookimpl
def register_retrievers(register: Register) -> None:
    register("faiss", "fusionrec.plugins.retrievers.faiss_impl:FaissRetriever", params=FaissParams)
