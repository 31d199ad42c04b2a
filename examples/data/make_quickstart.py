"""Derive the bundled quickstart data (``examples/data/quickstart``) from ml-latest-small and its posters.

Run from the repository root::

    .venv/bin/python examples/data/make_quickstart.py --source ../shared/data/movielens-small \\
        --dest examples/data/quickstart

The output has the ml-latest-small layout (ratings.csv, movies.csv, tags.csv, links.csv, README.txt and
posters/{movieId}.jpg) restricted to a few hundred movies that have a poster, and the users who rated them:

1. Rank the movies that have a poster by number of ratings (most first; ties by movieId).
2. Keep the ``HEAD`` most-rated ones, which gives every user material for a temporal split.
3. Keep ``TAIL`` more from the rest of the ranking (movies with at least ``TAIL_MIN_RATINGS`` ratings), evenly
   spaced by rank, so the subset has a long tail and a cold-item protocol has rarely-rated items to hold out.
4. Keep every rating of a kept movie (and so every user who rated one), the tags those users gave kept movies, and
   the movies.csv and links.csv rows of the kept movies. CSV rows are copied byte for byte, in their original order.
5. Resize each kept poster to fit within 64×96 px (Pillow, Lanczos), re-encoded as baseline JPEG at a fixed quality
   with no metadata.

The result is deterministic: the same input (and the same Pillow version, pinned in requirements/constraints.txt)
gives byte-identical files, so re-running the script changes nothing in git. It also writes NOTICE.md (licence,
poster source, how the subset was made, counts) and prints the counts.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

HEAD = 200
TAIL = 100
TAIL_MIN_RATINGS = 3
THUMBNAIL = (64, 96)
JPEG_QUALITY = 85

HEADERS = {
    "ratings.csv": ["userId", "movieId", "rating", "timestamp"],
    "movies.csv": ["movieId", "title", "genres"],
    "tags.csv": ["userId", "movieId", "tag", "timestamp"],
    "links.csv": ["movieId", "imdbId", "tmdbId"],
}


@dataclass(frozen=True)
class Summary:
    """What :func:`make_quickstart` wrote."""

    movies: int
    users: int
    ratings: int
    tags: int
    posters: int
    users_with_5: int
    bytes: int


def read_rows(path: Path) -> tuple[str, list[tuple[str, list[str]]]]:
    """The header line and every (raw line, parsed fields) of a CSV file that has one record per line."""
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    if not lines:
        raise SystemExit(f"{path}: empty file")
    header = next(csv.reader([lines[0]]))
    expected = HEADERS[path.name]
    if header != expected:
        raise SystemExit(f"{path}: header {header}, expected {expected}: is this ml-latest-small?")
    rows = []
    reader = csv.reader(lines[1:])
    for number, (line, fields) in enumerate(zip(lines[1:], reader, strict=True), start=1):
        if reader.line_num != number:
            raise SystemExit(f"{path}: row {number + 1} spans several lines; this script copies rows line by line")
        rows.append((line, fields))
    return lines[0], rows


def select_movies(ratings: list[tuple[str, list[str]]], with_poster: set[int]) -> list[int]:
    """The kept movieIds, by the rule in the module docstring (head first, then tail)."""
    counts = Counter(int(fields[1]) for _, fields in ratings)
    ranked = sorted((m for m in counts if m in with_poster), key=lambda m: (-counts[m], m))
    head = ranked[:HEAD]
    rest = [m for m in ranked[HEAD:] if counts[m] >= TAIL_MIN_RATINGS]
    if len(head) < HEAD or len(rest) < TAIL:
        raise SystemExit(f"too few rated movies with a poster: {len(ranked)}")
    tail = [rest[i * len(rest) // TAIL] for i in range(TAIL)]
    return head + tail


def thumbnail(source: Path) -> bytes:
    """The poster resized to fit within THUMBNAIL, as JPEG bytes without metadata."""
    with Image.open(source) as image:
        image = image.convert("RGB")
    image.thumbnail(THUMBNAIL, Image.Resampling.LANCZOS)
    # a fresh image carries no info dict: no EXIF, ICC profile or comment reaches the output
    clean = Image.frombytes("RGB", image.size, image.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=False, subsampling="4:2:0")
    return buffer.getvalue()


def write_lines(path: Path, header: str, lines: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header)
        handle.writelines(lines)


def make_quickstart(source: Path, dest: Path) -> Summary:
    """Write the quickstart subset of ``source`` (ml-latest-small with posters/) into ``dest``, replacing it."""
    source, dest = Path(source), Path(dest)
    posters = source / "posters"
    if not posters.is_dir():
        raise SystemExit(f"{posters}: no such folder; --source must be ml-latest-small with posters/")
    with_poster = {int(p.stem) for p in posters.glob("*.jpg") if p.stem.isdigit()}

    ratings_header, ratings = read_rows(source / "ratings.csv")
    chosen = select_movies(ratings, with_poster)
    kept = set(chosen)
    kept_ratings = [line for line, f in ratings if int(f[1]) in kept]
    users = {int(f[0]) for _, f in ratings if int(f[1]) in kept}
    per_user = Counter(int(f[0]) for _, f in ratings if int(f[1]) in kept)

    tables: dict[str, tuple[str, list[str]]] = {"ratings.csv": (ratings_header, kept_ratings)}
    tags_header, tags = read_rows(source / "tags.csv")
    tables["tags.csv"] = (tags_header, [line for line, f in tags if int(f[1]) in kept and int(f[0]) in users])
    for name in ("movies.csv", "links.csv"):
        header, rows = read_rows(source / name)
        tables[name] = (header, [line for line, f in rows if int(f[0]) in kept])
    if len(tables["movies.csv"][1]) != len(kept):
        raise SystemExit(f"{source / 'movies.csv'}: some rated movies are missing")

    summary = Summary(
        movies=len(kept),
        users=len(users),
        ratings=len(kept_ratings),
        tags=len(tables["tags.csv"][1]),
        posters=len(kept),
        users_with_5=sum(1 for n in per_user.values() if n >= 5),
        bytes=0,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, (header, lines) in tables.items():
            write_lines(work / name, header, lines)
        shutil.copyfile(source / "README.txt", work / "README.txt")
        (work / "posters").mkdir()
        for movie in sorted(kept):
            (work / "posters" / f"{movie}.jpg").write_bytes(thumbnail(posters / f"{movie}.jpg"))
        (work / "NOTICE.md").write_text(notice(summary), encoding="utf-8", newline="")
        os.chmod(work, 0o755)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(work, dest)
            shutil.rmtree(old)
        else:
            os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return Summary(**{**summary.__dict__, "bytes": size})


def notice(summary: Summary) -> str:
    """NOTICE.md: licence, citation, poster source and how this subset was made."""
    return f"""\
# Quickstart data: notice

This folder is a small subset of the MovieLens **ml-latest-small** dataset (generated by GroupLens on
2018-09-26), with thumbnails of movie posters. It is **not** covered by fusionrec's Apache-2.0 licence: it is
redistributed under the MovieLens usage licence below, and the posters remain the artwork of their owners.

## MovieLens usage licence

From the release's README.txt (copied unchanged into this folder; its counts describe the full release, not this
subset). Neither the University of Minnesota nor any of the researchers involved can guarantee the correctness of
the data, its suitability for any particular purpose, or the validity of results based on the use of the data
set. The data set may be used for any research purposes under the following conditions:

- The user may not state or imply any endorsement from the University of Minnesota or the GroupLens Research
  Group.
- The user must acknowledge the use of the data set in publications resulting from the use of the data set (see
  the citation below).
- The user may redistribute the data set, including transformations, so long as it is distributed under these
  same license conditions.
- The user may not use this information for any commercial or revenue-bearing purposes without first obtaining
  permission from a faculty member of the GroupLens Research Project at the University of Minnesota.

The full terms, including the warranty disclaimer and limitation of liability, are in README.txt. Questions:
<grouplens-info@umn.edu>. The dataset is published at <https://grouplens.org/datasets/movielens/>.

## Citation

> F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. ACM Transactions on
> Interactive Intelligent Systems (TiiS) 5, 4: 19:1–19:19. <https://doi.org/10.1145/2827872>

## Posters

`posters/{{movieId}}.jpg` are thumbnails (fit within {THUMBNAIL[0]}×{THUMBNAIL[1]} px, JPEG quality \
{JPEG_QUALITY}, metadata stripped) of
movie posters: most are TMDB (<https://www.themoviedb.org/>) w185 posters matched through links.csv's tmdbId, a
few are IMDb posters of MovieLens-1M movies, downscaled. The posters are copyrighted artwork of their owners, used
here for research, as small derived thumbnails. Use of TMDB and IMDb material is subject to the terms of each
provider. Some IMDb posters are auto-generated title cards rather than artwork.

## How this subset was made

`examples/data/make_quickstart.py` derives it deterministically from ml-latest-small plus one poster per movie
(re-running it gives byte-identical files):

1. Rank the movies that have a poster by their number of ratings (most first; ties by movieId).
2. Keep the {HEAD} most-rated.
3. Keep {TAIL} more, evenly spaced by rank over the rest of the ranking (movies with at least {TAIL_MIN_RATINGS}
   ratings), for a long tail of rarely-rated items.
4. Keep every rating of a kept movie (so every user who rated one), the tags those users gave kept movies, and the
   movies.csv and links.csv rows of the kept movies; rows are copied unchanged, in their original order.

| | count |
|---|---|
| movies (each with a poster) | {summary.movies} |
| users | {summary.users} |
| users with at least 5 ratings | {summary.users_with_5} |
| ratings | {summary.ratings} |
| tags | {summary.tags} |

To regenerate, from the repository root:

```bash
.venv/bin/python examples/data/make_quickstart.py --source ../shared/data/movielens-small \\
    --dest examples/data/quickstart
```
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, required=True, help="ml-latest-small with a posters/ folder")
    parser.add_argument("--dest", type=Path, required=True, help="output folder (replaced)")
    args = parser.parse_args(argv)
    s = make_quickstart(args.source, args.dest)
    print(
        f"{args.dest}: {s.movies} movies, {s.users} users ({s.users_with_5} with ≥ 5 ratings), {s.ratings} ratings, "
        f"{s.tags} tags, {s.posters} posters, {s.bytes} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
