"""The ``bow`` encoder plugin: a TF-IDF bag-of-words baseline, for ablations against the neural text encoders."""

from __future__ import annotations

from pydantic import Field, field_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class BowParams(Params):
    """TF-IDF bag of words fitted on the catalogue: L2-normalised vectors, one dimension per kept term."""

    max_features: int | None = Field(
        2000,
        gt=0,
        description="Keep the most frequent terms (by count over the catalogue), at most this many; the vectors "
        "have one dimension per kept term. null: every term (mind the memory: vectors are dense).",
    )
    min_df: int = Field(1, ge=1, description="Keep terms that occur in at least this many item texts.")
    ngram_range: tuple[int, int] = Field(
        (1, 1), description="Smallest and largest n-gram: [1, 1] single words, [1, 2] words and word pairs."
    )
    sublinear_tf: bool = Field(False, description="Use 1 + log(count) instead of the raw term count.")
    lowercase: bool = Field(True, description="Lower-case texts before tokenising.")

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 3:
            raise ValueError(f"expected [low, high] with 1 ≤ low ≤ high ≤ 3, e.g. [1, 2]; got [{low}, {high}]")
        return value


@hookimpl
def register_encoders(register: Register) -> None:
    register("bow", "fusionrec.plugins.encoders.bow_impl:BowEncoder", params=BowParams)
