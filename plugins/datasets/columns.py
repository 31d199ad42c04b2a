"""Column parsers: ids, numbers and timestamps from whatever a file holds, with a mask of the bad values.

Each parser takes a pyarrow column (strings from CSV, typed values from Parquet or JSON Lines) and returns numpy
arrays. The common case is one vectorised pyarrow cast; only a column with bad values takes the slower pandas
path that finds them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"
"""An id read as an integer: no leading zero, no plus sign, at most 18 digits (so it round-trips through int64)."""

MAX_SECONDS = 2**53
"""Timestamps beyond this many seconds from the epoch are rejected as bad values."""


def _strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return pc.utf8_trim_whitespace(col)
    return pc.cast(col, pa.string())


def missing_mask(col: pa.ChunkedArray) -> np.ndarray:
    """True where a value is null or an empty (or white-space only) string."""
    null = col.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        empty = pc.equal(pc.utf8_trim_whitespace(col), "").fill_null(True).to_numpy(zero_copy_only=False)
        return np.asarray(null | empty, dtype=bool)
    return np.asarray(null, dtype=bool)


def int_ids(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Ids as int64 and a mask of the values that are integers (missing and non-integer values are False).

    A string counts as an integer only when it is canonical (:data:`CANONICAL_INT`, surrounding spaces aside):
    ``"0111565001"`` is not ``111565001``, so a table whose ids are zero-padded keeps them as strings.
    """
    n = len(col)
    if pa.types.is_integer(col.type):
        ok = ~col.is_null().to_numpy(zero_copy_only=False)
        return col.fill_null(0).to_numpy().astype(np.int64, copy=False), np.asarray(ok, dtype=bool)
    if pa.types.is_floating(col.type):
        values = col.to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**62)
        return np.where(ok, values, 0).astype(np.int64), ok
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    trimmed = pc.utf8_trim_whitespace(col)
    try:
        cast = pc.cast(trimmed, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = pd.to_numeric(pd.Series(trimmed.to_numpy(zero_copy_only=False), dtype=object), errors="coerce")
        values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        text = pd.Series(trimmed.to_numpy(zero_copy_only=False), dtype=object)
        # only canonical integers count: '1.5', '1e3', '0x10' and '007' are not ids of an integer-id table
        ok = np.isfinite(values) & text.str.fullmatch(CANONICAL_INT[1:-1], na=False).to_numpy(dtype=bool)
        return np.where(ok, values, 0).astype(np.int64), ok
    # an id counts as an integer only in its canonical form, the one str(int(id)) writes back: '0111565001', '+5'
    # and '-0' keep their exact form as strings, so joining the output back to the source finds them
    canonical = pc.match_substring_regex(trimmed, CANONICAL_INT).fill_null(False).to_numpy(zero_copy_only=False)
    ok = ~cast.is_null().to_numpy(zero_copy_only=False) & canonical
    return np.where(ok, cast.fill_null(0).to_numpy(), 0).astype(np.int64), np.asarray(ok, dtype=bool)


def str_ids(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Ids as Python strings (object array) and a mask of the present (non-empty) values."""
    if pa.types.is_floating(col.type):
        values, ok = int_ids(col)  # 3.0 → '3', the way the same id reads in a CSV file
        text = np.where(ok, values.astype(str), col.to_numpy(zero_copy_only=False).astype(str)).astype(object)
        return text, ~missing_mask(col)
    strings = _strings(col)
    values = strings.fill_null("").to_numpy(zero_copy_only=False).astype(object)
    return values, ~missing_mask(col)


def numbers(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and a mask of the bad ones (missing, not a number, or not finite)."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            values = pc.cast(pc.utf8_trim_whitespace(col), pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
            values = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.full(len(col), np.nan)
    values = np.asarray(values, dtype=np.float64)
    return values, ~np.isfinite(values)


def timestamps(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Int64 seconds since the Unix epoch, and a mask of the bad values.

    Numbers are seconds (a fraction is dropped); strings that are not numbers are parsed as dates (ISO 8601 first,
    then any format pandas recognises), naive ones taken as UTC; date and timestamp columns are converted.
    """
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        seconds = pc.cast(pc.cast(col, pa.timestamp("s", tz=None)) if pa.types.is_date(col.type) else col, pa.int64())
        values = pc.floor_divide(seconds, _per_second(col.type)) if pa.types.is_timestamp(col.type) else seconds
        bad = values.is_null().to_numpy(zero_copy_only=False)
        return values.fill_null(0).to_numpy().astype(np.int64, copy=False), np.asarray(bad, dtype=bool)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        values, bad = numbers(col)
        return _seconds(values, bad)
    trimmed = pc.utf8_trim_whitespace(col)
    try:
        ints = pc.cast(trimmed, pa.int64())
        bad = ints.is_null().to_numpy(zero_copy_only=False)
        return ints.fill_null(0).to_numpy().astype(np.int64, copy=False), np.asarray(bad, dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pd.Series(trimmed.to_numpy(zero_copy_only=False), dtype=object)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    seconds, bad = _seconds(values, ~np.isfinite(values))
    dates = bad & text.notna().to_numpy() & (text != "").to_numpy()
    if dates.any():
        parsed = _parse_dates(text[dates])
        seconds[dates] = parsed.fillna(0).to_numpy(dtype=np.int64)
        bad[dates] = parsed.isna().to_numpy()
    return seconds, bad


def _per_second(kind: pa.DataType) -> int:
    return {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]  # type: ignore[attr-defined]


def _seconds(values: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bad = bad | ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) > MAX_SECONDS)
    return np.where(bad, 0, np.floor(np.nan_to_num(values))).astype(np.int64), bad


def _parse_dates(text: pd.Series) -> pd.Series:
    """Seconds since the epoch for each date string (``NaN`` where it does not parse), as a float Series."""
    epoch = pd.Timestamp(0, tz="UTC")
    out = pd.Series(np.nan, index=text.index)
    left = text
    for fmt in ("ISO8601", "mixed"):
        if left.empty:
            break
        parsed = pd.to_datetime(left, format=fmt, utc=True, errors="coerce")
        good = parsed.notna()
        out[good[good].index] = (parsed[good] - epoch) // pd.Timedelta(seconds=1)
        left = left[~good]
    return out
