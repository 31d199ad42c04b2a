"""The ``table`` dataset plugin: your own catalogue, as an items file and an interactions file."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from fusionrec.core.data import Duplicates, OnError
from fusionrec.core.params import Component, ExistingFile, Params
from fusionrec.plugins.datasets import template
from fusionrec.plugins.datasets.options import (
    CheckImages,
    Format,
    check_images_field,
    duplicates_field,
    min_rating_field,
    on_error_field,
    split_field,
)
from fusionrec.registry import Register, hookimpl

RESERVED = ("item", "item_id", "image")


class TableParams(Params):
    """Items and interactions files (CSV, Parquet or JSON Lines) with the column names given here."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": "catalogue/items.csv",
                    "interactions": "catalogue/interactions.csv",
                    "text_columns": ["title", "description"],
                    "image": "image_path",
                }
            ]
        }
    )

    items: ExistingFile = Field(description="The items file: one row per item.")
    interactions: ExistingFile = Field(description="The interactions file: one row per (user, item, time).")
    items_format: Format = Field("auto", description="Format of the items file; auto: from its extension.")
    interactions_format: Format = Field(
        "auto", description="Format of the interactions file; auto: from its extension."
    )
    sep: str | None = Field(
        None, min_length=1, max_length=1, description="CSV field separator; null: tab for .tsv files, else comma."
    )
    encoding: str = Field("utf-8", min_length=1, description="Text encoding of CSV and JSON Lines files.")
    item_id: str = Field("item_id", min_length=1, description="Items column holding the item id.")
    text_columns: tuple[str, ...] = Field((), description="Items columns holding text (title, description …).")
    text: str | None = Field(
        None,
        min_length=1,
        description="Item text template over the text columns ({title}; a part in [brackets] is left out when its "
        "fields are empty); null: the non-empty text columns joined with '. '.",
    )
    image: str | None = Field(
        None,
        min_length=1,
        description="Items column holding each item's image path (relative paths resolve against the items "
        "file's folder; empty: no image); null: no images.",
    )
    user: str = Field("user_id", min_length=1, description="Interactions column holding the user id.")
    item: str | None = Field(
        None, min_length=1, description="Interactions column holding the item id; null: the same name as item_id."
    )
    timestamp: str = Field(
        "timestamp",
        min_length=1,
        description="Interactions column holding the time: seconds since 1970, or dates (naive ones read as UTC).",
    )
    rating: str | None = Field(None, min_length=1, description="Interactions column holding a rating; null: none.")
    min_rating: float | None = min_rating_field()
    check_images: CheckImages = check_images_field()
    on_error: OnError = on_error_field()
    duplicates: Duplicates = duplicates_field()
    split: Component("split") = split_field()  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _consistent(self) -> TableParams:
        clash = [name for name in self.text_columns if name in RESERVED]
        if clash:
            raise ValueError(
                f"text_columns may not be named {', '.join(map(repr, clash))}: the items table uses "
                f"{', '.join(RESERVED)} for the internal id, the original id and the image path"
            )
        if self.text is not None:
            template.check(self.text, self.text_columns)
        if self.min_rating is not None and self.rating is None:
            raise ValueError("min_rating needs a rating column: set `rating:` to the column holding ratings")
        return self


@hookimpl
def register_datasets(register: Register) -> None:
    register("table", "fusionrec.plugins.datasets.table_impl:TableDataset", params=TableParams)
