"""From raw columns to :class:`InteractionData`: validation, fault reporting, contiguous ids.

Shared by every built-in dataset. Each check is one vectorised pass; every row that does not make it into the data
is counted under exactly one reason, with a few examples (file and row), in the :class:`DataReport`. Under
``on_error: raise`` the faults are collected first and raised together, so a user sees them all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from fusionrec.core.data import (
    IMAGE,
    INTERACTION_COLUMNS,
    ITEM_ID,
    MAX_EXAMPLES,
    TEXT,
    DataReport,
    Duplicates,
    FileCounts,
    InteractionData,
    OnError,
    RowIssue,
)
from fusionrec.core.errors import DataError
from fusionrec.plugins.datasets import columns
from fusionrec.plugins.datasets.readers import RawTable

DUPLICATE = "duplicate interaction"


class Collector:
    """Builds the :class:`DataReport` of one load and enforces ``on_error``."""

    def __init__(self, dataset: str, source: str, on_error: OnError, duplicates: Duplicates = "keep_first") -> None:
        self.report = DataReport(dataset, source, on_error, duplicates=duplicates)
        self.on_error = on_error
        self.duplicates = duplicates

    def read(self, table: RawTable) -> None:
        """Record that ``table`` was read (rows read, and the rows its parser rejected)."""
        self.report.files[str(table.file)] = FileCounts(table.read, len(table))
        self.report.issues.extend(table.issues)

    def flag(
        self,
        table: RawTable,
        reason: str,
        mask: np.ndarray,
        show: Callable[[int], str],
        *,
        detail: str = "",
        kind: str = "fault",
    ) -> None:
        """Count the rows of ``table`` where ``mask`` is true under ``reason``; ``show(i)`` describes row ``i``."""
        count = int(np.count_nonzero(mask))
        if not count:
            return
        examples = [f"row {table.rows[i]}: {show(int(i))}" for i in np.flatnonzero(mask)[:MAX_EXAMPLES]]
        self.report.issues.append(RowIssue(str(table.file), reason, count, examples, kind, detail))  # type: ignore[arg-type]

    def kept(self, table: RawTable, rows: int) -> None:
        """Record how many rows of ``table`` were kept."""
        self.report.files[str(table.file)].rows_kept = rows

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def enforce(self) -> None:
        """Under ``on_error: raise``, raise one :class:`DataError` listing every fault found so far."""
        faults = self.report.faults
        if self.on_error != "raise":  # `duplicates: raise` raises whatever on_error says
            faults = [issue for issue in faults if issue.reason == DUPLICATE]
        if not faults:
            return
        total = sum(issue.count for issue in faults)
        files = {issue.file for issue in faults}
        where = faults[0].file if len(files) == 1 else self.report.source  # name the file holding the bad rows
        policy = "duplicates: raise" if all(i.reason == DUPLICATE for i in faults) else "on_error: raise"
        lines = [f"{where}: {total:,} bad row{'s' if total != 1 else ''} ({policy}):"]
        for issue in faults:
            what = f" ({issue.detail})" if issue.detail else ""
            examples = "; ".join(issue.examples)
            lines.append(f"  {issue.file}: {issue.count:,} × {issue.reason}{what}, e.g. {examples}")
        if any(issue.reason != DUPLICATE for issue in faults):
            lines.append("Fix the data, or set `on_error: drop` to drop these rows (the data report lists every drop).")
        if any(issue.reason == DUPLICATE for issue in faults):
            lines.append(
                "Duplicate interactions: set `duplicates: keep_first` (keep one row, count the others) or "
                "`duplicates: keep_all` (keep every row) on the dataset."
            )
        error = DataError("\n".join(lines))
        error.file = faults[0].file
        first = faults[0].examples[0] if faults[0].examples else ""
        number = first.removeprefix("row ").split(":", 1)[0]
        error.row = int(number) if number.isdigit() else None
        raise error


@dataclass
class Items:
    """The catalogue: kept rows of the items file, sorted by original id."""

    ids: np.ndarray  # original ids, sorted, unique
    rows: np.ndarray  # index into the items table of each kept item, in ``ids`` order
    integer: bool  # ids are int64 (else strings)

    def __len__(self) -> int:
        return len(self.ids)


def ids_of(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Ids as int64 when every present value is an integer, else as strings; the mask of missing ones; the mode."""
    missing = columns.missing_mask(col)
    ints, ok = columns.int_ids(col)
    if bool(ok[~missing].all()):
        return ints, missing, True
    strings, _ = columns.str_ids(col)
    return strings, missing, False


def build_items(table: RawTable, id_column: str, c: Collector) -> Items:
    """Validate the item ids of ``table``: missing and duplicate ids are faults (the first of a duplicate wins)."""
    ids, missing, integer = ids_of(table.columns[id_column])
    c.flag(table, "missing item id", missing, lambda i: f"empty {id_column}", detail=f"no value in column {id_column}")
    frame = pd.DataFrame({"id": ids})
    dup = frame["id"].duplicated(keep="first").to_numpy() & ~missing
    if dup.any():
        first_row = _first_rows(frame["id"], table.rows)
        c.flag(
            table,
            "duplicate item id",
            dup,
            lambda i: f"{id_column} {_show(ids[i])} (first at row {first_row[ids[i]]})",
            detail="the same id on another row; the first one is kept",
        )
    keep = np.flatnonzero(~missing & ~dup)
    order = np.argsort(ids[keep], kind="stable")
    return Items(ids[keep][order], keep[order], integer)


def lookup(items: Items, values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Internal item id of each value, and whether it is in the catalogue (``valid`` false: never found)."""
    if len(items) == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(items.ids, values)
    pos = np.minimum(pos, len(items) - 1)
    found = valid & (items.ids[pos] == values)
    return pos.astype(np.int64), np.asarray(found, dtype=bool)


@dataclass
class Interactions:
    """Kept interactions in original user ids and internal item ids."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray


def build_interactions(
    table: RawTable,
    *,
    user: str,
    item: str,
    timestamp: str,
    rating: str | None,
    items: Items,
    items_file: str,
    c: Collector,
    min_rating: float | None = None,
) -> Interactions:
    """Validate interaction rows; every dropped row is counted under the first reason that applies.

    Raises:
        DataError: the file has no rows at all (a header only): nothing could be trained or evaluated on it.
    """
    if table.read == 0:
        raise DataError(
            "no interactions: the file has a header and no rows. A dataset needs interactions to split, train and "
            "evaluate on; check that the export finished, or point the dataset at the right file",
            file=table.file,
        )
    cols = table.columns
    users, user_missing, _ = ids_of(cols[user])
    item_missing = columns.missing_mask(cols[item])
    if items.integer:
        item_values, is_int = columns.int_ids(cols[item])
    else:
        item_values, is_int = columns.str_ids(cols[item])
    ts, ts_bad = columns.timestamps(cols[timestamp])
    if rating is not None:
        ratings, rating_bad = columns.numbers(cols[rating])
    else:
        ratings, rating_bad = np.full(len(table), np.nan), np.zeros(len(table), dtype=bool)

    def raw(name: str) -> Callable[[int], str]:
        col = cols[name]
        return lambda i: f"{name} {_show(col[i].as_py())}"

    dropped = user_missing | item_missing
    c.flag(
        table,
        "missing id",
        dropped,
        lambda i: f"{user} {_show(cols[user][i].as_py())}, {item} {_show(cols[item][i].as_py())}",
        detail=f"no value in {user} or {item}",
    )
    bad = ts_bad & ~dropped
    c.flag(table, "bad timestamp", bad, raw(timestamp), detail="neither seconds since 1970 nor a date")
    dropped |= bad
    bad = rating_bad & ~dropped
    if rating is not None:
        c.flag(table, "bad rating", bad, raw(rating), detail="not a finite number")
    dropped |= bad
    positions, found = lookup(items, item_values, is_int)
    bad = ~found & ~dropped
    c.flag(table, "unknown item", bad, raw(item), detail=f"{item} not in {items_file}")
    dropped |= bad

    keep = np.flatnonzero(~dropped)
    keep = _duplicates(
        table,
        keep,
        users,
        positions,
        ts,
        c,
        lambda i: f"{user} {_show(users[i])}, {item} {_show(item_values[i])}, {timestamp} {ts[i]}",
    )
    if min_rating is not None:
        low = np.zeros(len(table), dtype=bool)
        low[keep] = ratings[keep] < min_rating
        c.flag(
            table,
            "below min_rating",
            low,
            raw(rating) if rating is not None else str,
            detail=f"rating < {min_rating:g} is not a positive",
            kind="filter",
        )
        keep = keep[~low[keep]]
    c.kept(table, len(keep))
    return Interactions(users[keep], positions[keep], ts[keep], ratings[keep])


def _duplicates(
    table: RawTable,
    keep: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    c: Collector,
    show: Callable[[int], str],
) -> np.ndarray:
    """Apply ``c.duplicates`` to the rows ``keep`` that repeat an earlier row's user, item and timestamp."""
    key = pd.DataFrame({"u": users[keep], "i": items[keep], "t": ts[keep]})
    dup_kept = key.duplicated(keep="first").to_numpy()
    if not dup_kept.any():
        return keep
    dup = np.zeros(len(table), dtype=bool)
    dup[keep[dup_kept]] = True
    first = key.groupby(["u", "i", "t"], sort=False).ngroup().to_numpy()
    first_row = pd.Series(table.rows[keep]).groupby(first).transform("first").to_numpy()
    where = np.full(len(table), -1, dtype=np.int64)
    where[keep] = first_row
    policy = c.duplicates
    detail = {
        "keep_first": "same user, item and timestamp as an earlier row; duplicates: keep_first keeps the first",
        "keep_all": "same user, item and timestamp as an earlier row; duplicates: keep_all keeps every row",
        "raise": "same user, item and timestamp as an earlier row",
    }[policy]
    kind = {"keep_first": "filter", "keep_all": "note", "raise": "fault"}[policy]
    c.flag(table, DUPLICATE, dup, lambda i: f"{show(i)} (first at row {where[i]})", detail=detail, kind=kind)
    return keep if policy == "keep_all" else keep[~dup_kept]


def finish(
    items_frame: pd.DataFrame,
    item_ids: np.ndarray,
    interactions: Interactions,
    text_fields: tuple[str, ...],
    c: Collector,
) -> InteractionData:
    """Assemble :class:`InteractionData`: users numbered in order of original id, interactions sorted by user and
    timestamp, equal timestamps in file order (``interactions`` holds the kept rows in file order).

    Raises:
        DataError: no interaction is left once the faults are dropped and the filters applied.
    """
    if len(interactions.users) == 0:
        raise DataError(
            f"no interactions are left after dropping bad rows and applying filters ({c.report.dropped():,} rows "
            "dropped; `fusionrec data info` lists why). Check `min_rating` and the data",
            file=c.report.source,
        )
    user_ids, user_index = np.unique(interactions.users, return_inverse=True)
    order = np.lexsort((np.arange(len(user_index)), interactions.timestamps, user_index))
    frame = pd.DataFrame(
        {
            "user": user_index[order].astype(np.int64),
            "item": interactions.items[order].astype(np.int64),
            "timestamp": interactions.timestamps[order].astype(np.int64),
            "rating": interactions.ratings[order].astype(np.float64),
        },
        columns=list(INTERACTION_COLUMNS),
    )
    ts = frame["timestamp"]
    if len(ts) and ts.median() > 1e11:
        c.note("timestamps look like milliseconds (median > 1e11 seconds); fusionrec reads timestamps as seconds")
    items = items_frame.reset_index(drop=True)
    image = items[IMAGE].astype(object)
    items[IMAGE] = pd.Series(np.where(image.notna(), image, None), dtype=object)  # None, not NaN, for no image
    items.insert(0, "item", np.arange(len(items), dtype=np.int64))
    items.insert(1, ITEM_ID, item_ids)
    assert TEXT in items.columns and IMAGE in items.columns
    return InteractionData(items, frame, user_ids, item_ids, text_fields, c.report)


def _first_rows(ids: pd.Series, rows: np.ndarray) -> dict[object, int]:
    first = ~ids.duplicated(keep="first").to_numpy()
    dup_ids = set(ids[ids.duplicated(keep=False)].tolist())
    return {key: int(row) for key, row in zip(ids[first].tolist(), rows[first].tolist(), strict=True) if key in dup_ids}


def _show(value: object) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)
