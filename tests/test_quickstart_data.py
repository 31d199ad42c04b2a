"""The bundled quickstart data (examples/data/quickstart) is consistent, small, and reproducible by its script."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "data" / "quickstart"
SCRIPT = REPO / "examples" / "data" / "make_quickstart.py"
SOURCE = REPO / ".." / "shared" / "data" / "movielens-small"

HEADERS = {
    "ratings.csv": ["userId", "movieId", "rating", "timestamp"],
    "movies.csv": ["movieId", "title", "genres"],
    "tags.csv": ["userId", "movieId", "tag", "timestamp"],
    "links.csv": ["movieId", "imdbId", "tmdbId"],
}
MAX_BYTES = 3_000_000
MIN_USERS_WITH_5 = 400


def read(name: str) -> list[dict[str, str]]:
    with open(QUICKSTART / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_quickstart", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_quickstart"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["make_quickstart"]
    return module


def files(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_headers_are_the_ml_latest_small_ones(name: str) -> None:
    with open(QUICKSTART / name, encoding="utf-8", newline="") as handle:
        assert next(csv.reader(handle)) == HEADERS[name]


def test_the_script_and_the_data_agree_on_the_headers() -> None:
    assert load_script().HEADERS == HEADERS


def test_every_rated_or_tagged_movie_is_in_movies_and_links() -> None:
    movies = [row["movieId"] for row in read("movies.csv")]
    assert len(movies) == len(set(movies)) >= 200
    assert {row["movieId"] for row in read("links.csv")} == set(movies)
    assert {row["movieId"] for row in read("ratings.csv")} == set(movies), "every movie has at least one rating"
    assert {row["movieId"] for row in read("tags.csv")} <= set(movies)
    assert {row["userId"] for row in read("tags.csv")} <= {row["userId"] for row in read("ratings.csv")}


def test_ratings_parse_and_have_material_for_a_temporal_split() -> None:
    ratings = read("ratings.csv")
    assert all(0.5 <= float(r["rating"]) <= 5.0 and int(r["timestamp"]) > 0 for r in ratings)
    per_user = Counter(r["userId"] for r in ratings)
    assert sum(1 for n in per_user.values() if n >= 5) >= MIN_USERS_WITH_5
    per_item = Counter(r["movieId"] for r in ratings)
    assert min(per_item.values()) < 10 < max(per_item.values()), "the subset should have a head and a long tail"


def test_every_movie_has_a_small_poster_that_decodes() -> None:
    movies = {row["movieId"] for row in read("movies.csv")}
    posters = {p.stem: p for p in (QUICKSTART / "posters").iterdir()}
    assert set(posters) == movies
    for poster in posters.values():
        assert poster.suffix == ".jpg"
        with Image.open(poster) as image:
            image.load()
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.width <= 64 and image.height <= 96, f"{poster.name} is {image.size}"
            assert "exif" not in image.info and "icc_profile" not in image.info


def test_total_size_and_notice() -> None:
    total = size(QUICKSTART)
    assert total <= MAX_BYTES, f"the quickstart data is {total} bytes"
    notice = (QUICKSTART / "NOTICE.md").read_text(encoding="utf-8")
    needles = ("research purposes", "commercial", "same license conditions", "Harper and Joseph A. Konstan", "TMDB")
    for needle in (*needles, "https://doi.org/10.1145/2827872"):
        assert needle in notice
    assert f"| ratings | {len(read('ratings.csv'))} |" in notice


@pytest.mark.skipif(not SOURCE.is_dir(), reason="../shared/data/movielens-small is not here")
def test_the_script_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    dest = tmp_path / "quickstart"
    summary = load_script().make_quickstart(SOURCE, dest)
    assert files(dest) == files(QUICKSTART), "rerun examples/data/make_quickstart.py and commit its output"
    assert summary.posters == summary.movies == len(read("movies.csv"))
    assert summary.bytes == size(QUICKSTART)
