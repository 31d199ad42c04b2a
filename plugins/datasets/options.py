"""Parameter pieces every built-in dataset shares: ``on_error``, ``duplicates``, ``check_images``, ``min_rating``,
``split``.

Light on purpose (pydantic only): the plugin modules import it, and listing or validating must not import pandas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

CheckImages = Literal["none", "header", "decode"]
Format = Literal["auto", "csv", "parquet", "jsonl"]


def on_error_field() -> Any:
    return Field(
        "raise",
        description="What to do with bad rows (unknown items, duplicate ids, unparsable timestamps or ratings): "
        "raise a DataError listing counts and examples, or drop them (the data report counts every drop).",
    )


def duplicates_field() -> Any:
    return Field(
        "keep_first",
        description="Duplicate interactions (the same user, item and timestamp on several rows, such as two units "
        "of one article bought on one day): keep_first keeps the first row and counts the others as filtered; "
        "keep_all keeps every row (each one a positive); raise stops the load with a DataError listing them. "
        "Repeats at different times are separate events and always kept.",
    )


def check_images_field() -> Any:
    return Field(
        "header",
        description="How to check image files: none (the file exists), header (Pillow opens and verifies it; "
        "a JPEG must end with its end-of-image marker) or decode (every pixel decodes). A missing or unreadable "
        "image never fails the load: the item gets no image and the report counts it.",
    )


def min_rating_field() -> Any:
    return Field(
        None,
        allow_inf_nan=False,
        description="Implicit-feedback threshold: keep only ratings ≥ this as positives (the others are reported "
        "as filtered). null: every rating is a positive (the project's default protocol).",
    )


def split_field() -> Any:
    return Field(
        {"type": "temporal"},
        description="The split protocol, a split component (temporal, random, leave_last_out, cold_items, files).",
    )
