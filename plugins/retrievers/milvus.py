"""The ``milvus`` retriever plugin: Milvus Lite embedded by default, or a Milvus server or cluster by its uri.

pymilvus is imported only when a ``milvus`` retriever is built (the ``milvus`` extra installs it with Milvus Lite),
so ``fusionrec plugins`` and pipelines without this retriever never load it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl

INDEX_KEYS: dict[str, dict[str, tuple[int, int]]] = {
    "FLAT": {},
    "HNSW": {"M": (2, 2048), "efConstruction": (1, 1 << 31)},
    "IVF_FLAT": {"nlist": (1, 65536)},
}
"""Build parameters each index type takes, with their inclusive ranges (Milvus's own limits)."""
SEARCH_KEYS: dict[str, dict[str, tuple[int, int]]] = {
    "FLAT": {},
    "HNSW": {"ef": (1, 1 << 15)},
    "IVF_FLAT": {"nprobe": (1, 65536)},
}
"""Search parameters each index type takes, with their inclusive ranges."""
SERVER_SCHEMES = ("http://", "https://", "tcp://")
COLLECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def check_index_keys(values: dict[str, int], index: str, allowed: dict[str, dict[str, tuple[int, int]]]) -> None:
    """A ValueError naming every key ``index`` does not take and every value outside its range."""
    keys = allowed.get(index, {})
    problems = []
    for key, value in values.items():
        if key not in keys:
            takes = ", ".join(keys) or "no parameters"
            problems.append(f"{index} does not take {key!r} (it takes {takes})")
            continue
        low, high = keys[key]
        if isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{key} must be an integer in [{low}, {high}], got {value!r}")
    if problems:
        raise ValueError("; ".join(problems))


class MilvusParams(Params):
    """Search in a Milvus collection: embedded Milvus Lite (a local folder) or a Milvus server by its uri."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"index": "FLAT", "metric": "ip"}]})

    uri: str | None = Field(
        None,
        description="Where the collection lives. null: a private Milvus Lite database, copied as items.db into "
        "the folder the retriever is saved to; a path ending in .db: a Milvus Lite database there; "
        "http://host:19530 (https://, tcp://): a Milvus server or cluster, which keeps the data.",
    )
    collection: str = Field(
        "fusionrec_items",
        description="Collection name (letters, digits, underscores); build() drops and recreates it.",
    )
    index: Literal["FLAT", "HNSW", "IVF_FLAT"] = Field(
        "FLAT", description="Milvus index type: FLAT (exact), HNSW or IVF_FLAT (approximate)."
    )
    index_params: dict[str, int] = Field(
        default_factory=dict,
        description="Index build parameters, passed to Milvus as given: HNSW takes M and efConstruction, IVF_FLAT "
        "takes nlist, FLAT none.",
    )
    search_params: dict[str, int] = Field(
        default_factory=dict,
        description="Search parameters, passed to Milvus as given: HNSW takes ef, IVF_FLAT takes nprobe.",
    )
    metric: Literal["ip", "l2", "cosine"] = Field(
        "ip",
        description="Similarity: ip (inner product), l2 (scores are negative squared distances) or cosine.",
    )
    timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the server to answer when connecting (and for each call)."
    )
    token_env: str | None = Field(
        None,
        description="Name of an environment variable holding the server's token ('user:password' or an API "
        "key); null connects without one. The token itself is never written to a pipeline or a saved index.",
    )

    @field_validator("uri")
    @classmethod
    def _uri_is_lite_or_server(cls, value: str | None) -> str | None:
        if value is None or value.endswith(".db") or value.startswith(SERVER_SCHEMES):
            return value
        raise ValueError(
            f"{value!r} is neither a Milvus Lite file (a path ending in .db) nor a server address "
            "(http://host:19530, https://…, tcp://…); leave uri out for a private Milvus Lite database"
        )

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not COLLECTION_RE.match(value):
            raise ValueError(
                f"{value!r} is not a Milvus collection name: use letters, digits and underscores, "
                "starting with a letter or underscore"
            )
        return value

    @field_validator("index_params", "search_params")
    @classmethod
    def _keys_fit_the_index(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        if "index" not in info.data:
            return value  # the index type itself is wrong: that error is reported, not one per key
        index = str(info.data["index"])
        check_index_keys(value, index, INDEX_KEYS if info.field_name == "index_params" else SEARCH_KEYS)
        return value


@hookimpl
def register_retrievers(register: Register) -> None:
    register("milvus", "fusionrec.plugins.retrievers.milvus_impl:MilvusRetriever", params=MilvusParams)
