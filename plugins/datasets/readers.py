"""Reading CSV, Parquet and JSON Lines files into columns, with row numbers for every row kept.

Each reader returns the requested columns as pyarrow arrays (CSV columns as strings, so that a bad value in row
90,000 is a reported bad value, not a type-inference failure), the row number of every row, and the rows the
parser could not read (reported, never silently skipped). A missing file or column is a :class:`DataError`
naming the file and the column and listing the columns found.

Row numbers: in CSV the header is row 1, so a row's number is its line number (as long as no quoted value spans
lines); in JSON Lines it is the line number; in Parquet the first record is row 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from fusionrec.core.data import RowIssue
from fusionrec.core.errors import DataError

Format = Literal["auto", "csv", "parquet", "jsonl"]
EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")


@dataclass
class RawTable:
    """Columns read from one file.

    Attributes:
        file: the file.
        columns: requested column name → values (pyarrow), for the columns the file has.
        rows: the row number of each value (see the module docstring).
        read: rows read, including those the parser rejected.
        issues: malformed rows (dropped, ``fault``) and blank lines (``note``).
        names: every column the file has.
    """

    file: Path
    columns: dict[str, pa.ChunkedArray]
    rows: np.ndarray
    read: int
    issues: list[RowIssue] = field(default_factory=list)
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)


def detect_format(file: Path, fmt: Format = "auto") -> str:
    """The format of ``file``: ``fmt`` unless it is ``auto``, else from the extension (``.csv.gz`` is csv)."""
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in file.suffixes]
    while suffixes and suffixes[-1] in COMPRESSION:
        suffixes.pop()
    found = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise DataError(
            f"cannot tell the format from the extension {''.join(file.suffixes) or '(none)'}; known: "
            f"{', '.join(EXTENSIONS)} (optionally compressed). Set the format parameter to csv, parquet or jsonl.",
            file=file,
        )
    return found


def read_table(
    file: Path,
    required: Mapping[str, str],
    optional: Sequence[str] = (),
    *,
    fmt: Format = "auto",
    sep: str | None = None,
    encoding: str = "utf-8",
    missing_hint: str = "",
) -> RawTable:
    """Read the columns ``required`` (name → what asked for it, for messages) and ``optional`` from ``file``.

    Raises:
        DataError: the file does not exist or cannot be parsed, or lacks a required column.
    """
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "not found"
        raise DataError(f"{what}.{' ' + missing_hint if missing_hint else ''}", file=file)
    kind = detect_format(file, fmt)
    wanted = list(dict.fromkeys([*required, *optional]))
    try:
        if kind == "csv":
            if sep is None:
                sep = "\t" if ".tsv" in [s.lower() for s in file.suffixes] else ","
            return _read_csv(file, required, wanted, sep, encoding)
        if kind == "parquet":
            return _read_parquet(file, required, wanted)
        return _read_jsonl(file, required, wanted, encoding)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read this {kind} file: {exc}", file=file) from exc


def check_columns(file: Path, names: Sequence[str], required: Mapping[str, str]) -> None:
    """Raise a :class:`DataError` naming every required column the file lacks, and listing those it has."""
    missing = [name for name in required if name not in names]
    if not missing:
        return
    what = "; ".join(f"no column {name!r} ({required[name]})" for name in missing)
    found = ", ".join(repr(n) for n in names) if names else "none"
    raise DataError(f"{what}. Columns found: {found}.", file=file)


def _read_csv(file: Path, required: Mapping[str, str], wanted: list[str], sep: str, encoding: str) -> RawTable:
    with pa.input_stream(str(file), compression="detect") as stream:
        data = stream.read()
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        data = data.decode(encoding).encode("utf-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    first = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    names = tuple(name.strip() for name in next(csv.reader([first], delimiter=sep), []))
    check_columns(file, names, required)
    present = [name for name in wanted if name in names]
    bad: list[tuple[int | None, str, int, int]] = []

    def on_invalid(row: Any) -> str:
        bad.append((row.number, row.text, row.actual_columns, row.expected_columns))
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(use_threads=False, column_names=list(names), skip_rows=1),
        parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(
            include_columns=present,
            column_types={name: pa.string() for name in present},
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    n = table.num_rows
    blank = _blank_lines(data)
    if len(blank):
        # the parser numbers the non-blank lines only: the n-th of them is line n + (blank lines before it)
        before = blank - 1 - np.arange(len(blank))
        bad = [
            (r + int(np.searchsorted(before, r, side="left")) if r is not None else None, text, actual, expected)
            for r, text, actual, expected in bad
        ]
    skipped = np.sort(np.concatenate([np.array([r for r, *_ in bad if r is not None], dtype=np.int64), blank]))
    positions = np.arange(n, dtype=np.int64)
    rows = positions + 2
    if len(skipped):
        # the data row each skipped line would have been: every later row moves down one line
        slots = skipped - np.arange(len(skipped)) - 2
        rows += np.searchsorted(slots, positions, side="right")
    issues = []
    if bad:
        examples = [
            f"row {r if r is not None else '?'}: {actual} fields instead of {expected}: {_clip(text)}"
            for r, text, actual, expected in bad[:3]
        ]
        issues.append(
            RowIssue(
                str(file),
                "malformed row",
                len(bad),
                examples,
                detail="the CSV parser could not read the row (wrong number of fields)",
            )
        )
    if len(blank):
        issues.append(RowIssue(str(file), "blank line", len(blank), [], kind="note", detail="ignored"))
    columns = {name: table.column(name) for name in present}
    return RawTable(file, columns, rows, n + len(bad), issues, names)


def _blank_lines(data: bytes) -> np.ndarray:
    """Line numbers (1-based) of the empty lines in ``data``, which the CSV parser skips."""
    if b"\n\n" not in data and b"\n\r\n" not in data:
        return np.zeros(0, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)  # index of the newline ending line k + 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (buf[np.maximum(ends - 1, 0)] == 13))
    return (np.flatnonzero(blank) + 1).astype(np.int64)


def _read_parquet(file: Path, required: Mapping[str, str], wanted: list[str]) -> RawTable:
    import pyarrow.parquet as pq

    names = tuple(pq.read_schema(file).names)
    check_columns(file, names, required)
    present = [name for name in wanted if name in names]
    table = pq.read_table(file, columns=present)
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return RawTable(file, {name: table.column(name) for name in present}, rows, table.num_rows, [], names)


def _read_jsonl(file: Path, required: Mapping[str, str], wanted: list[str], encoding: str) -> RawTable:
    import pyarrow.json as pjson

    with pa.input_stream(str(file), compression="detect") as stream:
        data = stream.read()
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        data = data.decode(encoding).encode("utf-8")
    data = data.removeprefix(b"\xef\xbb\xbf")
    # pyarrow skips blank lines and stops at the first bad one; either way line numbers would be lost, so such
    # files take the slow, exact path
    exact = b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r\n"))
    if not exact:
        try:
            table = pjson.read_json(io.BytesIO(data))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            exact = True
    if exact:
        return _read_jsonl_lines(file, data.decode("utf-8"), required, wanted)
    names = tuple(table.column_names)
    check_columns(file, names, required)
    present = [name for name in wanted if name in names]
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return RawTable(file, {name: table.column(name) for name in present}, rows, table.num_rows, [], names)


def _read_jsonl_lines(file: Path, text: str, required: Mapping[str, str], wanted: list[str]) -> RawTable:
    """Line by line: only for files pyarrow cannot read in one go (bad lines, blank lines, mixed types)."""
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    bad: list[str] = []
    blank = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            blank += 1
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"row {number}: {exc.msg}: {_clip(line)}")
            continue
        if not isinstance(record, dict):
            bad.append(f"row {number}: a JSON {type(record).__name__}, not an object: {_clip(line)}")
            continue
        records.append(record)
        rows.append(number)
    names = tuple(dict.fromkeys(key for record in records for key in record))
    check_columns(file, names, required)
    columns = {}
    for name in wanted:
        if name not in names:
            continue
        values = [record.get(name) for record in records]
        try:
            columns[name] = pa.chunked_array([pa.array(values)])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            strings = [None if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v) for v in values]
            columns[name] = pa.chunked_array([pa.array(strings, pa.string())])
    issues = []
    if bad:
        issues.append(RowIssue(str(file), "malformed row", len(bad), bad[:3], detail="not a JSON object"))
    if blank:
        issues.append(RowIssue(str(file), "blank line", blank, [], kind="note", detail="ignored"))
    return RawTable(file, columns, np.array(rows, dtype=np.int64), len(records) + len(bad), issues, names)


def _clip(text: str, limit: int = 60) -> str:
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
