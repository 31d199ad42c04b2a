"""The ``movielens`` dataset plugin: a folder in the MovieLens ml-latest-small layout, with posters."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from fusionrec.core.data import Duplicates, OnError
from fusionrec.core.params import Component, ExistingFolder, Params
from fusionrec.plugins.datasets import template
from fusionrec.plugins.datasets.options import (
    CheckImages,
    check_images_field,
    duplicates_field,
    min_rating_field,
    on_error_field,
    split_field,
)
from fusionrec.registry import Register, hookimpl

TEXT_FIELDS = ("title", "genres", "tags")
DEFAULT_TEXT = "{title}[. Genres: {genres}][. Tags: {tags}]"


class MovieLensParams(Params):
    """A MovieLens folder (ratings.csv, movies.csv, tags.csv, posters/{movieId}.jpg): every rating a positive."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"path": "ml-latest-small"}]})

    path: ExistingFolder = Field(
        description="Folder in the ml-latest-small layout: ratings.csv, movies.csv, tags.csv (optional) and a "
        "posters folder."
    )
    text: str = Field(
        DEFAULT_TEXT,
        min_length=1,
        description="Item text template over {title}, {genres} (', '-separated) and {tags}; a part in [brackets] is "
        "left out when its fields are empty.",
    )
    max_tags: int = Field(10, ge=0, description="Most tags per movie in {tags}: the most used first, deduplicated.")
    min_rating: float | None = min_rating_field()
    images: str | None = Field(
        "posters",
        min_length=1,
        description="Folder (inside path) holding {movieId}.jpg posters; null: load without images.",
    )
    check_images: CheckImages = check_images_field()
    on_error: OnError = on_error_field()
    duplicates: Duplicates = duplicates_field()
    split: Component("split") = split_field()  # type: ignore[valid-type]

    @field_validator("text")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        return template.check(value, TEXT_FIELDS)


@hookimpl
def register_datasets(register: Register) -> None:
    register("movielens", "fusionrec.plugins.datasets.movielens_impl:MovieLens", params=MovieLensParams)
