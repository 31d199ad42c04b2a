"""Recommendations from a trained run, as people read them: original ids, titles, posters, scores, weights.

A :class:`Recommender` holds a run's data and its :class:`~fusionrec.core.engine.two_stage.TwoStage` (the one
retrieve-then-rerank path evaluation measured). Every user's history is everything the data holds (read when the
run is opened), and the items in it are never recommended. Each recommendation carries the retrieval score, the
ranker's score (when the run applies a ranker) and the fuser's per-modality weights of the item, which say what
the item's vector is made of. :func:`fusionrec.core.api.Run.open` builds one from a run directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionrec.core.data import IMAGE, TEXT, InteractionData, SplitData
from fusionrec.core.engine.evaluation import Part, blocked_items, known_interactions
from fusionrec.core.engine.two_stage import Ranked, Seen, TwoStage
from fusionrec.core.engine.two_tower import Histories
from fusionrec.core.errors import FusionrecError


@dataclass
class Recommendation:
    """One recommended item, with what explains it."""

    rank: int
    item: int
    item_id: Any
    title: str
    score: float
    retrieval_score: float | None = None
    ranker_score: float | None = None
    weights: dict[str, float] = field(default_factory=dict)
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "item_id": _plain(self.item_id),
            "title": self.title,
            "score": round(self.score, 6),
            "retrieval_score": None if self.retrieval_score is None else round(self.retrieval_score, 6),
            "ranker_score": None if self.ranker_score is None else round(self.ranker_score, 6),
            "weights": {k: round(v, 4) for k, v in self.weights.items()},
            "image": self.image,
        }


class Recommender:
    """Recommendations, session recommendations and similar items from a trained run, with what explains them.

    Everything goes through the run's :class:`~fusionrec.core.engine.two_stage.TwoStage` (the path evaluation
    measured); this class only maps original ids to internal ones and back and formats the rows.

    Attributes:
        data: the run's data; every user's history is everything it holds (read when the run is opened).
        stage: the two-stage path (retriever, ranker when applied).
        modalities: the modality keys of the per-modality weights.
    """

    def __init__(self, data: InteractionData, stage: TwoStage, modalities: Sequence[str] = ()) -> None:
        self.data = data
        self.stage = stage
        self.modalities = tuple(modalities)
        self.histories = Histories.from_frame(data.interactions, data.n_users)
        self._users = {str(u): i for i, u in enumerate(data.user_ids)}
        self._items = {str(v): i for i, v in enumerate(data.item_ids)}

    @property
    def candidates(self) -> int:
        return self.stage.candidates

    # ids ------------------------------------------------------------------------------------------------------

    def user_index(self, user_id: Any) -> int:
        """Internal id of a user given by its original id (as in the data files)."""
        found = self._users.get(str(user_id))
        if found is None:
            examples = ", ".join(str(u) for u in self.data.user_ids[:3])
            raise UnknownIdError(
                f"unknown user {user_id!r}: the data has {self.data.n_users:,} users (ids such as {examples}); "
                "give a user id as it appears in the interactions file."
            )
        return found

    def item_index(self, item_id: Any) -> int:
        found = self._items.get(str(item_id))
        if found is None:
            examples = ", ".join(str(v) for v in self.data.item_ids[:3])
            raise UnknownIdError(
                f"unknown item {item_id!r}: the catalogue has {self.data.n_items:,} items (ids such as {examples})."
            )
        return found

    def check_k(self, k: int) -> int:
        """``k`` capped at the catalogue's size; an error when it is not a positive number."""
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise FusionrecError(f"k must be a positive number of recommendations, got {k!r}")
        return min(k, self.data.n_items)

    # recommend ------------------------------------------------------------------------------------------------

    def recommend(self, user_ids: Sequence[Any], k: int = 10) -> list[list[Recommendation]]:
        """Top-``k`` unseen items for each user (original ids), best first."""
        k = self.check_k(k)
        users = np.array([self.user_index(u) for u in user_ids], dtype=np.int64)
        seen = Seen.of_histories(self.histories, users)
        queries = self.stage.query_vectors(users, self.histories) if self.stage.scorer is not None else None
        histories = self.histories if self.stage.scorer is not None else self.data.interactions
        lists = self.stage.lists(queries, seen, k, users=users, histories=histories)
        return [self._rows(ranked) for ranked in lists]

    def recommend_as_of(
        self, split: SplitData, part: Part, user_ids: Sequence[Any], k: int, stage: TwoStage | None = None
    ) -> list[list[Recommendation]]:
        """The lists evaluation scored for ``part``: each user's history is what was known before it (train for
        ``valid``, train + valid for ``test``), those items excluded, only the split's candidates for ``part``
        ranked (the cold-item split's), through ``stage`` (default: the served path).

        Users may be any of the data's; evaluation scores those with interactions in ``part``.
        """
        k = self.check_k(k)
        users = np.array([self.user_index(u) for u in user_ids], dtype=np.int64)
        known = known_interactions(split, part)
        stage = (stage if stage is not None else self.stage).at(known)
        blocked, _ = blocked_items(split, part, self.data.n_items)
        q = stage.as_of(
            users, Histories.from_frame(known, self.data.n_users), known,
            np.flatnonzero(blocked) if blocked is not None else None,
        )  # fmt: skip
        return [self._rows(ranked) for ranked in stage.lists(q.queries, q.seen, k, users=q.users, histories=q.history)]

    def recommend_history(
        self, item_ids: Sequence[Any], k: int = 10, exclude: Sequence[Any] = ()
    ) -> list[Recommendation]:
        """Top-``k`` items for a history given now (original item ids, newest last), for a user the run does not
        know: the user tower reads the history; its items and ``exclude`` are not recommended."""
        k = self.check_k(k)
        history = [self.item_index(i) for i in item_ids]
        excluded = sorted(set(history) | {self.item_index(i) for i in exclude})
        queries, built = self.stage.sessions([history])
        [ranked] = self.stage.lists(queries, Seen.of_lists([excluded]), k, histories=built)
        return self._rows(ranked)

    def similar_items(self, item_id: Any, k: int = 10) -> list[Recommendation]:
        """The ``k`` items whose vectors are closest to ``item_id``'s (itself excluded)."""
        k = min(self.check_k(k), self.data.n_items - 1)
        return self._rows(self.stage.similar(self.item_index(item_id), k))

    def item(self, item_id: Any) -> dict[str, Any]:
        """An item's metadata: id, title, text, image file name, whether it has an image and text."""
        index = self.item_index(item_id)
        items = self.data.items
        row = {column: _plain(items[column].iat[index]) for column in items.columns}
        image = row.get(IMAGE)
        text = row.get(TEXT)
        return {
            "item_id": _plain(self.data.item_ids[index]),
            "title": self._title(index),
            "has_image": isinstance(image, str) and bool(image),
            "has_text": isinstance(text, str) and bool(text),
            "image": Path(image).name if isinstance(image, str) and image else None,
            "text": text if isinstance(text, str) else None,
            "weights": self._weights(index),
        }

    def history_of(self, user_id: Any, last: int = 20) -> list[Recommendation]:
        """A user's most recent items (newest first), as rows."""
        user = self.user_index(user_id)
        items = self.histories.items[self.histories.offsets[user] : self.histories.offsets[user + 1]].tolist()
        newest = items[::-1][:last]
        return [self._row(rank + 1, item, 0.0, None, None) for rank, item in enumerate(newest)]

    # rows -----------------------------------------------------------------------------------------------------

    def _rows(self, ranked: Ranked) -> list[Recommendation]:
        return [
            self._row(rank + 1, item, score, retrieval, None if ranked.ranker is None else ranked.ranker[rank])
            for rank, (item, score, retrieval) in enumerate(
                zip(ranked.items, ranked.score, ranked.retrieval, strict=True)
            )
        ]

    def _title(self, item: int) -> str:
        items = self.data.items
        return str(items["title"].iat[item] if "title" in items.columns else items[TEXT].iat[item])

    def _weights(self, item: int) -> dict[str, float]:
        weights = self.stage.item_weights
        if weights is None or weights.shape[1] != len(self.modalities):
            return {}
        return {m: float(w) for m, w in zip(self.modalities, weights[item].tolist(), strict=True)}

    def _row(self, rank: int, item: int, score: float, retrieval: float | None, ranker: float | None) -> Recommendation:
        items = self.data.items
        image = items[IMAGE].iat[item] if IMAGE in items.columns else None
        return Recommendation(
            rank=rank,
            item=item,
            item_id=self.data.item_ids[item],
            title=self._title(item),
            score=score,
            retrieval_score=retrieval,
            ranker_score=ranker,
            weights=self._weights(item),
            image=Path(image).name if isinstance(image, str) and image else None,
        )


class UnknownIdError(FusionrecError):
    """A user or item id that the run's data does not have (the server answers 404)."""


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def write_csv(
    recommender: Recommender,
    users: Sequence[str],
    k: int,
    target: Path,
    batch: int = 256,
    recommend: Callable[[list[str], int], list[list[Recommendation]]] | None = None,
) -> None:
    """``userId,itemId,rank`` for every user in ``users`` (original ids, seen items excluded), written atomically;
    ``recommend(users, k)`` makes the lists (default: :meth:`Recommender.recommend`)."""
    import csv
    import io

    from fusionrec.core.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["userId", "itemId", "rank"])
    for start in range(0, len(users), batch):
        chunk = list(users[start : start + batch])
        for user, rows in zip(chunk, (recommend or recommender.recommend)(chunk, k), strict=True):
            writer.writerows([user, _plain(r.item_id), r.rank] for r in rows)
    atomic_write_text(target, buffer.getvalue())
