"""The data model every dataset plugin produces, the data report, and the dataset and split protocols.

A dataset plugin reads its files into one in-memory form, :class:`InteractionData`: an items table and an
interactions table in contiguous integer ids (``0..n-1``), with the original ids kept for mapping back, and a
:class:`DataReport` saying what was read, kept and dropped, and why. A split plugin divides the interactions
into train, validation and test (:class:`SplitData`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # kept out of the import path: plugin modules import this one, and listing plugins stays fast
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

INTERACTION_COLUMNS: tuple[str, ...] = ("user", "item", "timestamp", "rating")
"""Columns of :attr:`InteractionData.interactions`, in this order."""

ITEM_ID = "item_id"
"""Column of :attr:`InteractionData.items` holding each item's original id."""

TEXT = "text"
"""Column of :attr:`InteractionData.items` holding each item's text, as the text encoders read it."""

IMAGE = "image"
"""Column of :attr:`InteractionData.items` holding each item's image path (a ``str``), or ``None``."""

OnError = Literal["raise", "drop"]
"""What a dataset does with bad rows: ``raise`` a DataError listing them, or ``drop`` them and report it."""

Duplicates = Literal["keep_first", "keep_all", "raise"]
"""What a dataset does with duplicate interactions (the same user, item and timestamp on several rows): keep the
first and count the others as filtered, keep them all (each is a positive), or raise a DataError listing them."""

MAX_EXAMPLES = 3
"""Examples kept per reason in a report."""


@dataclass
class RowIssue:
    """Rows of one file that share a problem (or a filter that removed them).

    Attributes:
        file: the file the rows come from.
        reason: a short name: ``unknown item``, ``bad timestamp``, ``duplicate item id``, ``below min_rating`` …
        count: how many rows.
        examples: a few of them, as ``"row 17: movieId '99999'"``. In CSV the header is row 1, so a row's number
            is its line number; in JSON Lines it is the line number; in Parquet the first record is row 1.
        kind: ``fault`` (bad input, governed by ``on_error``), ``filter`` (removed because a parameter asked, such
            as ``min_rating``) or ``note`` (counted, nothing dropped: blank lines, say).
        detail: one sentence on what the reason means, for people reading the report.
    """

    file: str
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)
    kind: Literal["fault", "filter", "note"] = "fault"
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "reason": self.reason,
            "count": self.count,
            "kind": self.kind,
            "detail": self.detail,
            "examples": list(self.examples),
        }


@dataclass
class FileCounts:
    """Rows read from one file, and how many of them made it into the data."""

    rows_read: int
    rows_kept: int


@dataclass
class ImageReport:
    """What the image check found.

    The words are those of the feature step too: an item's image is *missing* when the data names none
    (``no_path``) or its file is absent (``missing``), and *unreadable* when the file is there but cannot be
    decoded; :meth:`missing_total` and ``unreadable`` are the counts ``fusionrec features`` reports.

    Attributes:
        check: ``none`` (the file exists), ``header`` (Pillow opens and verifies it) or ``decode`` (it decodes).
        items: items in the catalogue.
        found: items with a usable image.
        missing: items whose image file does not exist.
        unreadable: items whose image file exists but is not a readable image (truncated, not an image …).
        no_path: items for which the data names no image at all (an empty image cell).
        examples: a few paths per problem (``missing``, ``unreadable``), with the reason for unreadable ones.
        seconds: time the check took.
        unreadable_items: internal item id → ``(path, reason)`` of every unreadable image (not in :meth:`to_dict`),
            so the feature step counts these items as unreadable, not missing.
        notes: what the check wants the user to know (images downscaled while decoding, say).
    """

    check: str
    items: int
    found: int = 0
    missing: int = 0
    unreadable: int = 0
    no_path: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    unreadable_items: dict[int, tuple[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def missing_total(self) -> int:
        """Items without an image to read: none named, or the file is absent."""
        return self.no_path + self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "items": self.items,
            "found": self.found,
            "missing": self.missing,
            "unreadable": self.unreadable,
            "no_path": self.no_path,
            "examples": {key: list(value) for key, value in self.examples.items()},
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class DataReport:
    """What a load read, kept and dropped, per file and per reason. Nothing leaves the data unreported.

    Attributes:
        dataset: the dataset's registered name.
        source: where it was read from (a folder, or the items file).
        on_error: the ``on_error`` policy the load ran with.
        duplicates: the ``duplicates`` policy the load ran with.
        files: rows read and kept per file, in reading order.
        issues: every group of dropped (or noted) rows; for each file, ``rows_read - rows_kept`` equals the sum of
            its ``fault`` and ``filter`` counts.
        images: the image check, or ``None`` when the dataset has no images.
        notes: anything else worth knowing (a missing optional file, a suspicious value range).
        seconds: time the load took.
    """

    dataset: str
    source: str
    on_error: str = "raise"
    files: dict[str, FileCounts] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)
    images: ImageReport | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    duplicates: str = "keep_first"

    def dropped(self, file: str | None = None) -> int:
        """Rows dropped (faults and filters), in one file or in all."""
        return sum(i.count for i in self.issues if i.kind != "note" and (file is None or i.file == file))

    @property
    def faults(self) -> list[RowIssue]:
        """The issues that are bad input (as opposed to filters and notes)."""
        return [i for i in self.issues if i.kind == "fault"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON."""
        return {
            "dataset": self.dataset,
            "source": self.source,
            "on_error": self.on_error,
            "duplicates": self.duplicates,
            "files": {name: {"rows_read": c.rows_read, "rows_kept": c.rows_kept} for name, c in self.files.items()},
            "dropped": self.dropped(),
            "issues": [issue.to_dict() for issue in self.issues],
            "images": self.images.to_dict() if self.images is not None else None,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class InteractionData:
    """One catalogue with its interactions, in contiguous integer ids.

    Attributes:
        items: one row per item, in internal id order: ``item`` (``0..n_items-1``), ``item_id`` (the original id),
            the text fields (strings, ``""`` when empty), ``text`` (the item's text as encoders read it) and
            ``image`` (the image path as a ``str``, or ``None`` when the item has no usable image). Items without
            interactions are kept: they are part of the catalogue.
        interactions: columns ``user``, ``item`` (internal ids, int64), ``timestamp`` (int64 seconds since the
            Unix epoch) and ``rating`` (float64, NaN when the data has none), sorted by user and timestamp, with a
            default ``RangeIndex``. Equal timestamps of a user keep the data file's order (a basket's order is
            signal), so the row position is the tie-break the splits and histories use. Every row is a positive
            (implicit feedback).
        user_ids: original id of each internal user id (users are exactly those with an interaction).
        item_ids: original id of each internal item id.
        text_fields: the ``items`` columns the ``text`` column is made from.
        report: what loading read, kept and dropped.
    """

    items: pd.DataFrame
    interactions: pd.DataFrame
    user_ids: npt.NDArray[Any]
    item_ids: npt.NDArray[Any]
    text_fields: tuple[str, ...] = ()
    report: DataReport = field(default_factory=lambda: DataReport("unknown", ""))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def with_original_ids(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` (interaction rows in internal ids) as ``userId, itemId, timestamp, rating`` in original ids."""
        import pandas as pd

        return pd.DataFrame(
            {
                "userId": self.user_ids[rows["user"].to_numpy()],
                "itemId": self.item_ids[rows["item"].to_numpy()],
                "timestamp": rows["timestamp"].to_numpy(),
                "rating": rows["rating"].to_numpy(),
            }
        )


@dataclass
class SplitData:
    """Interactions split for training and evaluation.

    ``train``, ``valid`` and ``test`` are row subsets of :attr:`InteractionData.interactions`: same columns, same
    index labels, pairwise disjoint.

    Attributes:
        candidate_items: internal ids that test ranking is limited to (``None``: all items); the cold-item protocol
            ranks among the held-out items only.
        valid_candidate_items: the same for validation.
        info: facts about the split worth recording with results (e.g. how many users are evaluated).
        issues: rows the split could not place (a split given as files naming unknown ids), as in a data report.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    candidate_items: npt.NDArray[np.int64] | None = None
    valid_candidate_items: npt.NDArray[np.int64] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)

    def parts(self) -> dict[str, pd.DataFrame]:
        """``{"train": …, "valid": …, "test": …}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        """Interactions, users and items of each part."""
        return {
            name: {
                "interactions": len(rows),
                "users": int(rows["user"].nunique()),
                "items": int(rows["item"].nunique()),
            }
            for name, rows in self.parts().items()
        }


@runtime_checkable
class Split(Protocol):
    """A protocol that divides interactions into train, validation and test."""

    def split(self, data: InteractionData) -> SplitData:
        """Split ``data``; the same data and parameters (seed included) always give the same split."""
        ...


@runtime_checkable
class Dataset(Protocol):
    """A source of items and interactions, with the split protocol evaluation uses.

    Factories are called as ``factory(**params)`` and must not read anything yet: reading happens in :meth:`load`,
    so building a pipeline (and ``fusionrec validate``) stays cheap.
    """

    @property
    def split(self) -> Split:
        """The configured split protocol (usually a nested ``split`` parameter)."""
        ...

    def load(self) -> InteractionData:
        """Read the data, reporting (never silently dropping) every bad row.

        Raises:
            fusionrec.core.errors.DataError: a file or column is missing, or bad rows were found under
                ``on_error: raise``.
        """
        ...


__all__ = [
    "IMAGE",
    "INTERACTION_COLUMNS",
    "ITEM_ID",
    "MAX_EXAMPLES",
    "TEXT",
    "DataReport",
    "Dataset",
    "Duplicates",
    "FileCounts",
    "ImageReport",
    "InteractionData",
    "OnError",
    "RowIssue",
    "Split",
    "SplitData",
]
