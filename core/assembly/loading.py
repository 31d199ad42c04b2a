"""What ``fusionrec data info`` and ``fusionrec data split`` do: load a pipeline's data, describe it, split it.

Kept out of :mod:`fusionrec.core.cli` so the command line stays a thin layer; everything here returns plain data
(JSON-ready dicts) or writes files, and the CLI prints.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fusionrec.core.assembly.config import PipelineSpec, load_pipeline
from fusionrec.core.data import TEXT, DataReport, Dataset, InteractionData, Split, SplitData
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.io import atomic_write_text
from fusionrec.core.params import ComponentSpec
from fusionrec.registry import Registry

SPLIT_FILES = ("train.csv", "valid.csv", "test.csv")
CANDIDATE_FILES = {"test": "test_candidates.csv", "valid": "valid_candidates.csv"}
MANIFEST = "split.json"
REPORT = "data_report.json"
COLUMNS = ("userId", "itemId", "timestamp", "rating")


@dataclass
class Loaded:
    """A pipeline's data, loaded: the validated pipeline, the built dataset and what it loaded."""

    spec: PipelineSpec
    dataset: Dataset
    data: InteractionData


def load(pipeline: Path, registry: Registry) -> Loaded:
    """Validate ``pipeline``, build its ``data`` section and load it.

    Raises:
        ConfigError: the file is invalid or has no ``data`` section.
        DataError: the data is missing or has bad rows (under ``on_error: raise``).
    """
    return load_data(load_pipeline(pipeline, registry), registry)


def load_data(spec: PipelineSpec, registry: Registry) -> Loaded:
    """Build a validated pipeline's ``data`` section and load it (the YAML is not read again).

    Raises:
        ConfigError: the pipeline has no ``data`` section.
        DataError: the data is missing or has bad rows (under ``on_error: raise``).
    """
    pipeline = spec.file
    if spec.data is None:
        raise ConfigError.at(
            ("data",),
            "the pipeline has no `data` section; add one, e.g. `data: {type: movielens, path: ml-latest-small}`.",
            file=pipeline,
        )
    dataset = registry.build(spec.data)
    if not isinstance(dataset, Dataset):
        raise FusionrecError(
            f"{pipeline}: data: dataset '{spec.data.type}' built a {type(dataset).__name__}, which has no load() "
            "and split; it does not implement fusionrec.core.data.Dataset."
        )
    return Loaded(spec, dataset, dataset.load())


def _spread(values: Any) -> dict[str, float]:
    if len(values) == 0:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": int(values.min()),
        "median": float(values.median()),
        "mean": round(float(values.mean()), 2),
        "max": int(values.max()),
    }


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(loaded: Loaded) -> dict[str, Any]:
    """The figures ``fusionrec data info`` shows, as JSON-ready data."""
    data = loaded.data
    frame = data.interactions
    n_users, n_items, n = data.n_users, data.n_items, len(frame)
    pairs = len(frame[["user", "item"]].drop_duplicates()) if n else 0
    per_user = frame.groupby("user").size()
    per_item = frame.groupby("item").size().reindex(range(n_items), fill_value=0)
    with_image = int(data.items["image"].notna().sum())
    with_text = int((data.items[TEXT].astype(str).str.strip() != "").sum())
    ratings = frame["rating"].dropna()
    assert loaded.spec.data is not None
    return {
        "dataset": loaded.spec.data.type,
        "source": data.report.source,
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "sparsity": round(1 - pairs / (n_users * n_items), 6) if n_users and n_items else None,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "items_without_interactions": int((per_item == 0).sum()),
        "items_with_image": with_image,
        "share_items_with_image": round(with_image / n_items, 4) if n_items else None,
        "items_with_text": with_text,
        "share_items_with_text": round(with_text / n_items, 4) if n_items else None,
        "text_fields": list(data.text_fields),
        "time_range": (
            {
                "first": _iso(int(frame["timestamp"].min())),
                "last": _iso(int(frame["timestamp"].max())),
                "first_timestamp": int(frame["timestamp"].min()),
                "last_timestamp": int(frame["timestamp"].max()),
            }
            if n
            else None
        ),
        "ratings": (
            {"min": float(ratings.min()), "mean": round(float(ratings.mean()), 4), "max": float(ratings.max())}
            if len(ratings)
            else None
        ),
        "duplicate_pairs": int(n - pairs),
        "report": data.report.to_dict(),
    }


def report_lines(report: DataReport) -> list[str]:
    """A compact, human-readable summary of a data report (a few lines)."""
    lines = []
    files = ", ".join(
        f"{Path(name).name} {c.rows_read:,} read / {c.rows_kept:,} kept" for name, c in report.files.items()
    )
    lines.append(f"data report ({report.dataset}, on_error: {report.on_error}): {files or 'no files'}")
    dropped = [i for i in report.issues if i.kind != "note"]
    if dropped:
        total = sum(i.count for i in dropped)
        lines.append(f"  dropped {total:,} rows:")
        for issue in dropped:
            example = f", e.g. {issue.examples[0]}" if issue.examples else ""
            kind = " (filter)" if issue.kind == "filter" else ""
            lines.append(f"    {Path(issue.file).name}: {issue.count:,} {issue.reason}{kind}{example}")
    else:
        lines.append("  dropped: none")
    for issue in report.issues:
        if issue.kind == "note":
            lines.append(f"  note: {Path(issue.file).name}: {issue.count:,} {issue.reason} ({issue.detail})")
    images = report.images
    if images is not None:
        line = (
            f"  images ({images.check} check): {images.found:,} of {images.items:,} items have one; "
            f"{images.missing_total:,} missing ({images.no_path:,} with no image named, {images.missing:,} file "
            f"absent), {images.unreadable:,} unreadable (file present, cannot be decoded)"
        )
        lines.append(line)
        for problem in ("unreadable",):
            for example in images.examples.get(problem, [])[:1]:
                lines.append(f"    e.g. {example}")
        lines.extend(f"  note: {note}" for note in images.notes)
    lines.extend(f"  note: {note}" for note in report.notes)
    lines.append(f"  loaded in {report.seconds:.2f} s")
    return lines


def write_report(report: DataReport, target: Path) -> None:
    """Write a data report as JSON, atomically."""
    _write(target, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")


def split_spec(dataset: Dataset, spec: PipelineSpec) -> ComponentSpec | None:
    """The spec the dataset's split was built from, when known."""
    record = getattr(dataset.split, "fusionrec_build", None)
    if record is not None:
        return record.spec  # type: ignore[no-any-return]
    assert spec.data is not None
    nested = getattr(spec.data.params, "split", None)
    return nested if isinstance(nested, ComponentSpec) else None


def split_name(loaded: Loaded) -> str:
    """The configured split's type (``temporal``, …), for messages."""
    nested = split_spec(loaded.dataset, loaded.spec)
    return nested.type if nested is not None else type(loaded.dataset.split).__name__


def run_split(loaded: Loaded) -> SplitData:
    """Run the dataset's configured split."""
    split = loaded.dataset.split
    if not isinstance(split, Split):
        raise FusionrecError(f"the dataset's split is a {type(split).__name__}, not a fusionrec.core.data.Split")
    return split.split(loaded.data)


def write_split(loaded: Loaded, result: SplitData, out: Path, pipeline: Path) -> dict[str, Any]:
    """Write the split into ``out`` in original ids; returns the manifest (also written as ``split.json``).

    Every file is written atomically, and the manifest goes last (after being removed first): a folder with a
    ``split.json`` holds a complete split.
    """
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    data = loaded.data
    written: dict[str, str] = {}
    for name, rows in result.parts().items():
        file = f"{name}.csv"
        _write_csv(out / file, data.with_original_ids(rows))
        written[name] = file
    for part, file in CANDIDATE_FILES.items():
        items = result.candidate_items if part == "test" else result.valid_candidate_items
        if items is None:
            (out / file).unlink(missing_ok=True)
            continue
        _write_csv(out / file, pd.DataFrame({"item": data.item_ids[items]}))
        written[f"{part}_candidates"] = file
    write_report(data.report, out / REPORT)
    written["data_report"] = REPORT
    nested = split_spec(loaded.dataset, loaded.spec)
    assert loaded.spec.data is not None
    manifest = {
        "fusionrec_split": 1,
        "pipeline": str(pipeline.resolve()),
        "dataset": {k: v for k, v in loaded.spec.data.to_dict().items() if k != "split"},
        "split": nested.to_dict() if nested is not None else None,
        "protocol": _protocol(loaded.dataset.split),
        "columns": list(COLUMNS),
        "ids": "original",
        "files": written,
        "counts": result.counts(),
        "candidates": {
            "test": None if result.candidate_items is None else len(result.candidate_items),
            "valid": None if result.valid_candidate_items is None else len(result.valid_candidate_items),
        },
        "info": result.info,
        "issues": [issue.to_dict() for issue in result.issues],
    }
    _write(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False, default=_plain) + "\n")
    return manifest


def _protocol(split: object) -> str:
    import inspect

    doc = inspect.getdoc(type(split)) or ""
    return " ".join(doc.split()) if doc else type(split).__name__


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _write_csv(target: Path, frame: Any) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    _write(target, buffer.getvalue())


def _write(target: Path, text: str) -> None:
    atomic_write_text(target, text)


def info_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the ``fusionrec data info`` table."""

    def spread(d: dict[str, float]) -> str:
        return f"min {d['min']:,}, median {d['median']:,g}, mean {d['mean']:,}, max {d['max']:,}"

    def share(count: int, part: float | None) -> str:
        return f"{count:,} ({part:.1%})" if part is not None else f"{count:,}"

    rows = [
        ("dataset", f"{figures['dataset']} ({figures['source']})"),
        ("users", f"{figures['users']:,}"),
        ("items", f"{figures['items']:,} ({figures['items_without_interactions']:,} without interactions)"),
        ("interactions", f"{figures['interactions']:,}"),
        ("sparsity", f"{figures['sparsity']:.4%}" if figures["sparsity"] is not None else "-"),
        ("per user", spread(figures["interactions_per_user"])),
        ("per item", spread(figures["interactions_per_item"])),
        ("items with image", share(figures["items_with_image"], figures["share_items_with_image"])),
        ("items with text", share(figures["items_with_text"], figures["share_items_with_text"])),
    ]
    span = figures["time_range"]
    rows.append(("time range", f"{span['first']} … {span['last']}" if span else "-"))
    ratings = figures["ratings"]
    if ratings:
        rows.append(("ratings", f"min {ratings['min']:g}, mean {ratings['mean']:g}, max {ratings['max']:g}"))
    return rows


def split_lines(manifest: dict[str, Any], out: Path) -> list[str]:
    """What ``fusionrec data split`` prints: the protocol, the size of each part, the files written."""
    spec = manifest["split"] or {}
    params = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "type")
    lines = [f"split {spec.get('type', '?')}{f' ({params})' if params else ''} → {out}"]
    for part, counts in manifest["counts"].items():
        lines.append(
            f"  {part:<5} {counts['interactions']:>10,} interactions  {counts['users']:>7,} users  "
            f"{counts['items']:>7,} items"
        )
    for part, count in manifest["candidates"].items():
        if count is not None:
            lines.append(f"  {part} ranks among {count:,} candidate items")
    for issue in manifest["issues"]:
        lines.append(f"  {issue['kind']}: {Path(issue['file']).name}: {issue['count']:,} {issue['reason']}")
    lines.append(f"wrote {', '.join(manifest['files'].values())}, {MANIFEST}")
    return lines


__all__ = [
    "Loaded",
    "describe",
    "info_rows",
    "load",
    "report_lines",
    "run_split",
    "split_lines",
    "write_report",
    "write_split",
]
