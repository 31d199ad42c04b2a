"""Loading a MovieLens folder (the ml-latest-small layout) into :class:`InteractionData`.

ratings.csv (userId, movieId, rating, timestamp) gives the interactions, movies.csv (movieId, title, genres) the
catalogue, tags.csv (userId, movieId, tag, timestamp) the tags (optional: without it no movie has tags, and the
data report says so), and ``posters/{movieId}.jpg`` the images. links.csv is not needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusionrec.core.data import IMAGE, TEXT, Duplicates, InteractionData, OnError, Split
from fusionrec.core.errors import DataError
from fusionrec.plugins.datasets import images as image_check
from fusionrec.plugins.datasets import template
from fusionrec.plugins.datasets.assemble import Collector, Items, build_interactions, build_items, finish, lookup
from fusionrec.plugins.datasets.columns import int_ids, missing_mask, str_ids
from fusionrec.plugins.datasets.movielens import TEXT_FIELDS
from fusionrec.plugins.datasets.options import CheckImages
from fusionrec.plugins.datasets.readers import read_table

NO_GENRES = "(no genres listed)"


class MovieLens:
    """MovieLens ratings, movies, tags and posters; every rating a positive unless ``min_rating`` is set.

    Building reads nothing; :meth:`load` reads the folder.
    """

    def __init__(
        self,
        path: Path,
        split: Split,
        text: str = "{title}[. Genres: {genres}][. Tags: {tags}]",
        max_tags: int = 10,
        min_rating: float | None = None,
        images: str | None = "posters",
        check_images: CheckImages = "header",
        on_error: OnError = "raise",
        duplicates: Duplicates = "keep_first",
    ) -> None:
        self.path = Path(path)
        self.split = split
        self.text = template.check(text, TEXT_FIELDS)
        self.max_tags = max_tags
        self.min_rating = min_rating
        self.images = images
        self.check_images = check_images
        self.on_error = on_error
        self.duplicates = duplicates

    def load(self) -> InteractionData:
        start = time.perf_counter()
        root = self.path
        if not root.is_dir():
            raise DataError(
                "folder not found" if not root.exists() else "not a folder",
                file=root,
            ) from None
        hint = f"The movielens dataset reads ratings.csv, movies.csv and (when present) tags.csv from {root}."
        c = Collector("movielens", str(root), self.on_error, self.duplicates)
        movies = read_table(
            root / "movies.csv",
            {"movieId": "the movie id", "title": "the movie title", "genres": "pipe-separated genres"},
            missing_hint=hint,
        )
        c.read(movies)
        items = build_items(movies, "movieId", c)
        ratings = read_table(
            root / "ratings.csv",
            {
                "userId": "the user id",
                "movieId": "the movie id",
                "rating": "the rating",
                "timestamp": "seconds since 1970",
            },
            missing_hint=hint,
        )
        c.read(ratings)
        interactions = build_interactions(
            ratings,
            user="userId",
            item="movieId",
            timestamp="timestamp",
            rating="rating",
            items=items,
            items_file="movies.csv",
            c=c,
            min_rating=self.min_rating,
        )
        tags = self._tags(root, items, c, hint)
        c.enforce()
        c.kept(movies, len(items))

        def column(name: str) -> pd.Series:
            values = movies.columns[name].take(items.rows).fill_null("").to_numpy(zero_copy_only=False)
            return pd.Series(values, dtype=object).str.strip()

        genres = column("genres")
        genres = genres.mask(genres == NO_GENRES, "").str.replace("|", ", ", regex=False)
        fields = {"title": column("title"), "genres": genres, "tags": tags}
        frame = pd.DataFrame(fields)
        frame[TEXT] = template.render(self.text, fields)
        frame[IMAGE] = self._images(root, items, c)
        data = finish(frame, items.ids, interactions, TEXT_FIELDS, c)
        c.report.seconds = time.perf_counter() - start
        return data

    def _tags(self, root: Path, items: Items, c: Collector, hint: str) -> pd.Series:
        """Each movie's tags, most used first (ties: first used first), case-insensitively deduplicated."""
        empty = pd.Series("", index=range(len(items)), dtype=object)
        if "tags" not in template.fields(self.text) or self.max_tags == 0:
            c.note("tags.csv not read: the text template does not use {tags}" if self.max_tags else "max_tags is 0")
            return empty
        if not (root / "tags.csv").exists():  # many MovieLens releases (ml-1m, ml-10m, ml-100k …) have no tags
            c.note(f"tags.csv not found in {root}: no movie has tags (many MovieLens releases have none)")
            return empty
        table = read_table(root / "tags.csv", {"movieId": "the movie id", "tag": "the tag"}, missing_hint=hint)
        c.read(table)
        ids, present = (int_ids if items.integer else str_ids)(table.columns["movieId"])
        missing = missing_mask(table.columns["movieId"])
        c.flag(table, "missing id", missing, lambda i: "empty movieId", detail="no value in movieId")
        positions, found = lookup(items, ids, present)
        unknown = ~found & ~missing
        col = table.columns["movieId"]
        c.flag(
            table,
            "unknown item",
            unknown,
            lambda i: f"movieId {col[i].as_py()!r}",
            detail="movieId not in movies.csv",
        )
        tag_text = pd.Series(table.columns["tag"].fill_null("").to_numpy(zero_copy_only=False), dtype=object)
        tag_text = tag_text.str.strip().str.replace(r"\s+", " ", regex=True)
        blank = (tag_text == "").to_numpy() & found
        c.flag(table, "empty tag", blank, lambda i: "tag ''", detail="the tag is empty", kind="filter")
        keep = found & ~blank
        c.kept(table, int(keep.sum()))
        frame = pd.DataFrame(
            {"item": positions[keep], "tag": tag_text[keep].to_numpy(), "order": np.arange(keep.sum())}
        )
        frame["key"] = frame["tag"].str.lower()
        grouped = frame.groupby(["item", "key"], sort=False).agg(
            tag=("tag", "first"), uses=("tag", "size"), first=("order", "min")
        )
        grouped = grouped.reset_index().sort_values(["item", "uses", "first"], ascending=[True, False, True])
        grouped = grouped[grouped.groupby("item").cumcount() < self.max_tags]
        joined = grouped.groupby("item", sort=True)["tag"].agg(", ".join)
        empty.iloc[joined.index.to_numpy()] = joined.to_numpy()
        return empty

    def _images(self, root: Path, items: Items, c: Collector) -> np.ndarray:
        if self.images is None:
            c.note("images: null, so no item has an image")
            return np.full(len(items), None, dtype=object)
        folder = root / self.images
        if not folder.is_dir():
            raise DataError(
                f"poster folder not found (images: {self.images!r}). Set `images:` to the folder holding "
                "{movieId}.jpg, or `images: null` to load without images.",
                file=folder,
            )
        base = str(folder.resolve())
        names = pd.Series(items.ids.astype(str), dtype=object)
        paths = (base + "/" + names + ".jpg").tolist()
        usable, report = image_check.check(paths, self.check_images)
        c.report.images = report
        return usable
