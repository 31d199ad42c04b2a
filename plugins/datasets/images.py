"""Image checks: which items have a usable image. A bad image file never fails a load.

- ``none``: the file exists (one directory listing per folder, not one ``stat`` per item);
- ``header``: Pillow opens the file and ``verify()``\\ s it (for PNG that checks every chunk's CRC), and a JPEG must
  end with its end-of-image marker, which catches a truncated download without decoding (about 30 µs a file);
- ``decode``: Pillow decodes every pixel (about 0.3 ms for a 185×278 JPEG); a JPEG larger than
  :data:`DRAFT_SIDE` on both sides is decoded at a reduced scale (Pillow's ``draft``), as the image encoders do.

An image over Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``, 89 megapixels) makes Pillow warn of a
"decompression bomb"; fusionrec does not print that warning: the encoders downscale such images while decoding
(:mod:`fusionrec.plugins.encoders.image_io`), and the report notes them, with a few examples.

An item whose file is missing or unreadable gets no image (``None``); the fusers' masks handle that. The report
counts each case, with a few examples.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from fusionrec.core.data import MAX_EXAMPLES, ImageReport
from fusionrec.plugins.datasets.options import CheckImages

JPEG_END = b"\xff\xd9"
DRAFT_SIDE = 1024
"""The decode check decodes a large JPEG at the scale the image encoders use (their ``MAX_SIDE``)."""


def check(paths: list[str | None], mode: CheckImages) -> tuple[np.ndarray, ImageReport]:
    """The usable image path of each item (``None`` where there is none) and the report.

    Args:
        paths: the path each item's image should be at, or ``None`` when the data names none.
        mode: how thoroughly to check (see the module docstring).
    """
    start = time.perf_counter()
    report = ImageReport(check=mode, items=len(paths))
    out = np.array(paths, dtype=object)
    named = np.array([p is not None for p in paths], dtype=bool)
    report.no_path = int((~named).sum())
    exists = _exists(out, named)
    missing = named & ~exists
    report.missing = int(missing.sum())
    if report.missing:
        report.examples["missing"] = [str(p) for p in out[missing][:MAX_EXAMPLES]]
    out[~exists] = None
    if mode != "none":
        bad: list[str] = []
        large: list[str] = []
        for index in np.flatnonzero(exists):
            problem, size = _problem(out[index], mode)
            if size is not None:
                large.append(f"{out[index]} ({size[0]}×{size[1]})")
            if problem is not None:
                report.unreadable += 1
                report.unreadable_items[int(index)] = (str(out[index]), problem)
                if len(bad) < MAX_EXAMPLES:
                    bad.append(f"{out[index]}: {problem}")
                out[index] = None
        if bad:
            report.examples["unreadable"] = bad
        if large:
            report.notes.append(_large_note(large))
    report.found = int(sum(p is not None for p in out))
    report.seconds = time.perf_counter() - start
    return out, report


def _exists(paths: np.ndarray, named: np.ndarray) -> np.ndarray:
    """Whether each named path is a file, listing each folder once."""
    exists = np.zeros(len(paths), dtype=bool)
    by_folder: dict[str, list[int]] = defaultdict(list)
    for index in np.flatnonzero(named):
        folder = str(paths[index]).rpartition(os.sep)[0]
        by_folder[folder].append(int(index))
    for folder, indexes in by_folder.items():
        try:
            with os.scandir(folder or os.sep) as entries:
                files = {entry.name for entry in entries if entry.is_file()}
        except OSError:
            continue
        exists[indexes] = [str(paths[i]).rpartition(os.sep)[2] in files for i in indexes]
    return exists


def _large_note(large: list[str]) -> str:
    from PIL import Image

    limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    n = len(large)
    return (
        f"{n:,} image{'s' if n != 1 else ''} over Pillow's {limit:.0f}-megapixel safety limit "
        f"{'are' if n != 1 else 'is'} downscaled while decoding (to at least {DRAFT_SIDE} pixels a side: no "
        f"encoder reads more), e.g. {', '.join(large[:MAX_EXAMPLES])}"
    )


def _problem(path: str, mode: CheckImages) -> tuple[str | None, tuple[int, int] | None]:
    """Why ``path`` is not a usable image (``None`` when it is), and its size when it is over Pillow's limit."""
    from PIL import Image, UnidentifiedImageError

    size: tuple[int, int] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own warnings (decompression bomb …): the report says it
            with open(path, "rb") as handle:
                with Image.open(handle) as image:
                    kind = image.format
                    if image.size[0] * image.size[1] > (Image.MAX_IMAGE_PIXELS or float("inf")):
                        size = image.size
                    if mode == "decode":
                        image.draft(image.mode, (DRAFT_SIDE, DRAFT_SIDE))
                        image.load()
                        return None, size
                    image.verify()
                if kind == "JPEG":
                    end = handle.seek(0, os.SEEK_END)
                    handle.seek(max(0, end - 64))
                    if JPEG_END not in handle.read():
                        return "truncated JPEG (no end-of-image marker)", size
    except UnidentifiedImageError:
        return "not an image Pillow can read", size
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, struct.error …) for broken files
        text = str(exc).replace(str(path), Path(path).name) or type(exc).__name__
        return f"{type(exc).__name__}: {text}", size
    return None, size
