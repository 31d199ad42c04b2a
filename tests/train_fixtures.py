"""A small synthetic catalogue with planted structure, and pipelines over it, for the training tests.

Items belong to one of four genres (their text says which); each user mostly watches one genre, in an order that
walks through the genre's items, so both the content and the sequence carry signal.
"""

from __future__ import annotations

import random
from pathlib import Path

GENRES = ("space opera", "romantic comedy", "crime thriller", "animated family")


def write_catalogue(root: Path, *, users: int = 80, items_per_genre: int = 12, length: int = 14, seed: int = 0) -> Path:
    """Write items.csv and interactions.csv under ``root``; return ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["item_id,title,genre"]
    for g, genre in enumerate(GENRES):
        for i in range(items_per_genre):
            lines.append(f"{g * 100 + i},{genre} story {i},{genre}")
    (root / "items.csv").write_text("\n".join(lines) + "\n")
    rows = ["user_id,item_id,timestamp"]
    for u in range(users):
        g = u % len(GENRES)
        start = rng.randrange(items_per_genre)
        for t in range(length):
            if rng.random() < 0.85:
                item = g * 100 + (start + t) % items_per_genre
            else:
                item = rng.randrange(len(GENRES)) * 100 + rng.randrange(items_per_genre)
            rows.append(f"u{u},{item},{1000 + 10 * t}")
    # duplicates (a user re-watching) are fine for the loader; keep them rare
    (root / "interactions.csv").write_text("\n".join(rows) + "\n")
    return root


def write_pipeline(
    folder: Path,
    *,
    user: str = "{type: mean}",
    train: str = "{epochs: 4, batch_size: 64, lr: 0.01, seed: 0}",
    extra: str = "",
    encoders: bool = True,
    name: str = "pipeline.yaml",
) -> Path:
    """A pipeline over the catalogue written by :func:`write_catalogue` into ``folder / 'data'``."""
    if not (folder / "data" / "items.csv").exists():
        write_catalogue(folder / "data")
    text = """fusionrec: 1
data:
  type: table
  items: data/items.csv
  interactions: data/interactions.csv
  text_columns: [title, genre]
  split: {type: temporal}
"""
    if encoders:
        text += f"""encoders:
  text: {{type: bow}}
features: {{cache: {folder / "cache"}}}
fuser: {{type: concat, dim: 16}}
"""
    if user:
        text += f"user: {user}\n"
    text += f"train: {train}\nevaluate: {{bootstrap: 200}}\n{extra}"
    path = folder / name
    path.write_text(text)
    return path
