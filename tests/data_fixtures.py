"""Small data folders for the dataset, split and data-command tests, written into tmp_path."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MOVIELENS_SMALL = REPO / ".." / "shared" / "data" / "movielens-small"

MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children
2,Jumanji (1995),Adventure|Fantasy
3,"Grumpier Old Men, The (1995)",Comedy|Romance
5,Father of the Bride Part II (1995),(no genres listed)
7,Sabrina (1995),Comedy
"""

# user 10: six ratings with ties at t=100 and t=200 (broken by movie id); user 20: five; user 30: two (train only)
RATINGS = """userId,movieId,rating,timestamp
10,5,4.0,100
10,3,3.5,100
10,7,5.0,50
10,2,2.0,200
10,1,1.0,200
10,7,4.5,300
20,1,5.0,10
20,2,4.0,20
20,3,3.0,30
20,5,2.0,40
20,7,1.0,50
30,1,4.0,5
30,2,4.5,6
"""

TAGS = """userId,movieId,tag,timestamp
10,1,pixar,1
20,1,Pixar,2
30,1,fun,3
10,1,toys,4
20,2,board game,5
10,2,  ,6
"""


def jpeg(size: tuple[int, int] = (32, 48), seed: int = 0) -> bytes:
    """A small valid JPEG of noise (so that most of its bytes are image data, not headers)."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_movielens(
    root: Path,
    *,
    movies: str = MOVIES,
    ratings: str = RATINGS,
    tags: str | None = TAGS,
    posters: dict[str, bytes] | None = None,
) -> Path:
    """A MovieLens folder. Default posters: 1, 2, 3 good; 5 truncated; 7 missing."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.csv").write_text(movies)
    (root / "ratings.csv").write_text(ratings)
    if tags is not None:
        (root / "tags.csv").write_text(tags)
    folder = root / "posters"
    folder.mkdir(exist_ok=True)
    good = jpeg()
    if posters is None:
        posters = {"1.jpg": good, "2.jpg": good, "3.jpg": good, "5.jpg": good[: len(good) // 2]}
    for name, content in posters.items():
        (folder / name).write_bytes(content)
    return root


def write_pipeline(folder: Path, data: str, name: str = "pipeline.yaml") -> Path:
    """A pipeline file with ``data: <data>`` in ``folder``."""
    path = folder / name
    path.write_text(f"fusionrec: 1\ndata: {data}\n")
    return path
