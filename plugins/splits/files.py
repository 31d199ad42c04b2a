"""The ``files`` split plugin: train, validation and test given as files, so an external harness sets the split."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from fusionrec.core.data import OnError
from fusionrec.core.params import ConfigPath, Params
from fusionrec.plugins.datasets.options import Format
from fusionrec.registry import Register, hookimpl


class FilesParams(Params):
    """Train/valid/test files in original ids (the `fusionrec data split` output reads back as is)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"train": "split/train.csv", "valid": "split/valid.csv", "test": "split/test.csv"}]
        }
    )

    train: ConfigPath = Field(description="File of training interactions (user and item in original ids).")
    valid: ConfigPath | None = Field(None, description="File of validation interactions; null: no validation part.")
    test: ConfigPath = Field(description="File of test interactions.")
    format: Format = Field("auto", description="File format: auto (from the extension), csv, parquet or jsonl.")
    user: str = Field("userId", min_length=1, description="Column holding the original user id.")
    item: str = Field("itemId", min_length=1, description="Column holding the original item id.")
    timestamp: str | None = Field(
        "timestamp",
        min_length=1,
        description="Column matched with the interaction's timestamp; null: match on user and item only (every "
        "interaction of that pair goes to the part).",
    )
    test_candidates: ConfigPath | None = Field(
        None, description="File of item ids (column `item`) that test ranking is limited to; null: all items."
    )
    valid_candidates: ConfigPath | None = Field(
        None, description="File of item ids (column `item`) that validation ranking is limited to; null: all items."
    )
    on_error: OnError = Field(
        "raise",
        description="Rows naming an unknown user or item, or no interaction of the data, or one interaction in two "
        "files: raise a DataError listing them, or drop them (the split's report counts them).",
    )


@hookimpl
def register_splits(register: Register) -> None:
    register("files", "fusionrec.plugins.splits.files_impl:FilesSplit", params=FilesParams)
