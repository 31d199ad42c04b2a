"""Loading an items file and an interactions file, with configured column names, into :class:`InteractionData`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusionrec.core.data import IMAGE, TEXT, Duplicates, InteractionData, OnError, Split
from fusionrec.plugins.datasets import images as image_check
from fusionrec.plugins.datasets import template
from fusionrec.plugins.datasets.assemble import Collector, Items, build_interactions, build_items, finish
from fusionrec.plugins.datasets.columns import missing_mask
from fusionrec.plugins.datasets.options import CheckImages, Format
from fusionrec.plugins.datasets.readers import RawTable, read_table


class TableDataset:
    """Your catalogue as two files: items (id, text columns, image path) and interactions (user, item, time).

    Building reads nothing; :meth:`load` reads both files.
    """

    def __init__(
        self,
        items: Path,
        interactions: Path,
        split: Split,
        items_format: Format = "auto",
        interactions_format: Format = "auto",
        sep: str | None = None,
        encoding: str = "utf-8",
        item_id: str = "item_id",
        text_columns: tuple[str, ...] = (),
        text: str | None = None,
        image: str | None = None,
        user: str = "user_id",
        item: str | None = None,
        timestamp: str = "timestamp",
        rating: str | None = None,
        min_rating: float | None = None,
        check_images: CheckImages = "header",
        on_error: OnError = "raise",
        duplicates: Duplicates = "keep_first",
    ) -> None:
        self.items_file, self.interactions_file = Path(items), Path(interactions)
        self.split = split
        self.formats = (items_format, interactions_format)
        self.sep, self.encoding = sep, encoding
        self.item_id, self.text_columns = item_id, tuple(text_columns)
        self.text = template.check(text, self.text_columns) if text is not None else None
        self.image = image
        self.user, self.item, self.timestamp, self.rating = user, item or item_id, timestamp, rating
        self.min_rating, self.check_images, self.on_error = min_rating, check_images, on_error
        self.duplicates = duplicates

    def load(self) -> InteractionData:
        start = time.perf_counter()
        c = Collector("table", str(self.items_file), self.on_error, self.duplicates)
        required = {self.item_id: "item_id, the item id"}
        required |= {name: "one of text_columns" for name in self.text_columns}
        if self.image is not None:
            required[self.image] = "image, the image path"
        items_table = read_table(self.items_file, required, fmt=self.formats[0], sep=self.sep, encoding=self.encoding)
        c.read(items_table)
        items = build_items(items_table, self.item_id, c)
        columns = {self.user: "user, the user id", self.item: "item, the item id"}
        columns[self.timestamp] = "timestamp, the time of the interaction"
        if self.rating is not None:
            columns[self.rating] = "rating"
        table = read_table(self.interactions_file, columns, fmt=self.formats[1], sep=self.sep, encoding=self.encoding)
        c.read(table)
        interactions = build_interactions(
            table,
            user=self.user,
            item=self.item,
            timestamp=self.timestamp,
            rating=self.rating,
            items=items,
            items_file=self.items_file.name,
            c=c,
            min_rating=self.min_rating,
        )
        c.enforce()
        c.kept(items_table, len(items))

        fields = {name: _text(items_table, name, items) for name in self.text_columns}
        frame = pd.DataFrame(fields)
        if self.text is not None:
            frame[TEXT] = template.render(self.text, fields)
        elif fields:
            frame[TEXT] = template.render("".join(f"[. {{{name}}}]" for name in fields), fields).str.removeprefix(". ")
        else:
            frame[TEXT] = ""
        frame[IMAGE] = self._images(items_table, items, c)
        data = finish(frame, items.ids, interactions, self.text_columns, c)
        c.report.seconds = time.perf_counter() - start
        return data

    def _images(self, table: RawTable, items: Items, c: Collector) -> np.ndarray:
        if self.image is None:
            return np.full(len(items), None, dtype=object)
        col = table.columns[self.image].take(items.rows)
        named = ~missing_mask(col)
        raw = pd.Series(col.fill_null("").to_numpy(zero_copy_only=False), dtype=object).astype(str).str.strip()
        base = str(self.items_file.resolve().parent) + os.sep
        absolute = raw.map(os.path.isabs, na_action="ignore").fillna(False).to_numpy(dtype=bool)
        paths = np.where(absolute, raw, base + raw).astype(object)
        paths = [os.path.normpath(p) if ok else None for p, ok in zip(paths, named, strict=True)]
        usable, report = image_check.check(paths, self.check_images)
        c.report.images = report
        return usable


def _text(table: RawTable, name: str, items: Items) -> pd.Series:
    col = table.columns[name].take(items.rows)
    values = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
    return values.where(values.notna(), "").astype(str).str.strip()
