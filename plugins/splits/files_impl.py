"""The ``files`` split: train, validation and test read from files in original ids, matched to the data.

Each file row names a user and an item (and, by default, a timestamp); it is matched to the interactions of the
loaded data with the same values. The parts are therefore always rows of the data. What cannot be placed is
reported: rows naming an unknown user or item or no interaction of the data, and interactions claimed by two
files, are faults (``on_error``); interactions of the data that no file lists are left out and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fusionrec.core.data import InteractionData, OnError, RowIssue, SplitData
from fusionrec.core.errors import DataError
from fusionrec.plugins.datasets import columns
from fusionrec.plugins.datasets.assemble import Collector
from fusionrec.plugins.datasets.options import Format
from fusionrec.plugins.datasets.readers import RawTable, read_table

PARTS = ("train", "valid", "test")


class FilesSplit:
    """Train, validation and test as files in original ids, matched to the data's interactions.

    Rows are matched on (user, item, timestamp), or on (user, item) with ``timestamp: null``. The output of
    ``fusionrec data split`` reads back unchanged.
    """

    def __init__(
        self,
        train: Path,
        test: Path,
        valid: Path | None = None,
        format: Format = "auto",
        user: str = "userId",
        item: str = "itemId",
        timestamp: str | None = "timestamp",
        test_candidates: Path | None = None,
        valid_candidates: Path | None = None,
        on_error: OnError = "raise",
    ) -> None:
        self.files = {"train": Path(train), "valid": Path(valid) if valid is not None else None, "test": Path(test)}
        self.format, self.user, self.item, self.timestamp = format, user, item, timestamp
        self.candidates = {"test": test_candidates, "valid": valid_candidates}
        self.on_error = on_error

    def split(self, data: InteractionData) -> SplitData:
        c = Collector("files split", ", ".join(str(f) for f in self.files.values() if f is not None), self.on_error)
        keys = ["user", "item"] + (["timestamp"] if self.timestamp else [])
        listed = []
        for part, file in self.files.items():
            if file is None:
                continue
            required = {self.user: "user, the user id", self.item: "item, the item id"}
            if self.timestamp:
                required[self.timestamp] = "timestamp; set `timestamp: null` to match on user and item only"
            table = read_table(file, required, fmt=self.format)
            c.read(table)
            rows = self._rows(table, data, c)
            rows["part"] = part
            listed.append(rows)
        frame = pd.concat(listed, ignore_index=True)
        interactions = data.interactions.reset_index(names="label")
        matched = frame.merge(interactions[[*keys, "label"]], on=keys, how="left")
        unmatched = matched["label"].isna().to_numpy()
        self._flag_rows(
            c,
            matched,
            unmatched,
            "no such interaction",
            "user and item are known, but the data has no interaction with these values: check the timestamp, "
            "or min_rating",
        )
        matched = matched[~unmatched]
        parts_of = matched.groupby("label")["part"].nunique()
        conflict = matched["label"].isin(parts_of.index[parts_of > 1]).to_numpy()
        self._flag_rows(c, matched, conflict, "in two files", "the same interaction is listed in two parts")
        matched = matched[~conflict]
        for part, file in self.files.items():
            if file is not None:
                rows = matched.loc[matched["part"] == part, "row"]
                c.report.files[str(file)].rows_kept = int(rows.nunique())
        c.enforce()

        labels = matched.drop_duplicates("label").set_index("label")["part"]
        placed = data.interactions.index.isin(labels.index)
        split = {part: data.interactions.loc[labels.index[labels.to_numpy() == part]].sort_index() for part in PARTS}
        left_out = int((~placed).sum())
        issues = list(c.report.issues)
        if left_out:
            issues.append(
                RowIssue(
                    "(the loaded data)",
                    "in no split file",
                    left_out,
                    [],
                    kind="note",
                    detail="interactions of the data that no file lists are in no part",
                )
            )
        candidates = {part: self._candidates(part, data, c) for part in ("test", "valid")}
        info = {"matched_on": keys, "interactions_in_no_file": left_out}
        return SplitData(
            split["train"],
            split["valid"],
            split["test"],
            candidate_items=candidates["test"],
            valid_candidate_items=candidates["valid"],
            info=info,
            issues=issues,
        )

    def _rows(self, table: RawTable, data: InteractionData, c: Collector) -> pd.DataFrame:
        """The file's rows in internal ids; rows with a missing or unknown id or a bad timestamp are flagged."""
        users, user_ok = _internal(table.columns[self.user], data.user_ids)
        items, item_ok = _internal(table.columns[self.item], data.item_ids)
        missing = columns.missing_mask(table.columns[self.user]) | columns.missing_mask(table.columns[self.item])
        c.flag(table, "missing id", missing, lambda i: "empty user or item id", detail="no value in the row")
        bad = ~user_ok & ~missing
        col = table.columns[self.user]
        c.flag(table, "unknown user", bad, lambda i: f"{self.user} {col[i].as_py()!r}", detail="not in the data")
        drop = missing | bad
        bad = ~item_ok & ~drop
        icol = table.columns[self.item]
        c.flag(table, "unknown item", bad, lambda i: f"{self.item} {icol[i].as_py()!r}", detail="not in the data")
        drop |= bad
        out = pd.DataFrame({"user": users, "item": items, "row": table.rows, "file": str(table.file)})
        if self.timestamp:
            ts, ts_bad = columns.timestamps(table.columns[self.timestamp])
            tcol = table.columns[self.timestamp]
            bad = ts_bad & ~drop
            c.flag(table, "bad timestamp", bad, lambda i: f"{self.timestamp} {tcol[i].as_py()!r}")
            drop |= bad
            out["timestamp"] = ts
        return out[~drop]

    def _flag_rows(self, c: Collector, rows: pd.DataFrame, mask: np.ndarray, reason: str, detail: str) -> None:
        for file, group in rows[mask].groupby("file", sort=False):
            examples = [f"row {r}" for r in group["row"].head(3)]
            c.report.issues.append(RowIssue(str(file), reason, len(group), examples, "fault", detail))

    def _candidates(self, part: str, data: InteractionData, c: Collector) -> np.ndarray | None:
        file = self.candidates[part]
        if file is None:
            return None
        table = read_table(Path(file), {"item": "item, the candidate item id"}, fmt=self.format)
        items, ok = _internal(table.columns["item"], data.item_ids)
        if not ok.all():
            col = table.columns["item"]
            first = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{int((~ok).sum())} candidate item(s) not in the data, e.g. item {col[first].as_py()!r}",
                file=file,
                row=int(table.rows[first]),
            )
        return np.unique(items).astype(np.int64)


def _internal(col: pa.ChunkedArray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Internal ids of the original ids in ``col`` (``ids`` sorted), and which were found."""
    integer = np.issubdtype(ids.dtype, np.integer)
    values, ok = columns.int_ids(col) if integer else columns.str_ids(col)
    if len(ids) == 0:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    found = ok & (ids[pos] == values)
    return pos.astype(np.int64), np.asarray(found, dtype=bool)
