"""The reranker's data: its training set from the retriever's own candidates on a time slice of train, and the
same features for any (user history, candidates) at serving or evaluation time.

Training set (:func:`build_training_set`): for each training user, the last ``holdout`` train interactions are the
labels and the train interactions before them the history; valid and test are never read. The user vector comes
from the history (through the given user-vector function), the retriever's top-N candidates exclude the history,
and the held-out items among them are the positives, every other candidate a hard negative. Each user's
candidate list is one group (:attr:`RankingFeatures.groups`), for pairwise and listwise objectives.

Features (:func:`candidate_features`), besides the user and item vectors, the modality weights and the retrieval
score, in :attr:`RankingFeatures.extra` (names in :attr:`RankingFeatures.extra_names`):

- ``retrieval_rank``: the candidate's 1-based rank in the retriever's list;
- ``similarity_<modality>``: cosine similarity of the candidate's features of that modality to the mean of the
  (L2-normalised) features of the user's ``recent`` last history items (0 when either side lacks the modality);
- ``popularity`` and ``recent_popularity``: ``log1p`` of the item's interaction count in the history data, overall
  and in the last ``recent_fraction`` of its time range;
- ``item_age_days``: days from the item's first interaction in the history data to that data's last timestamp
  ("now"; 0 for an item never seen);
- ``user_activity``: ``log1p`` of the user's history length; ``days_since_last``: days from the user's last
  history interaction to "now";
- ``tag_overlap`` (when items have tags or genres): Jaccard overlap of the candidate's tags with those of the
  user's ``recent`` last history items.

"Now" and the item statistics come from the history data only (train minus the held-out slice when training; the
known interactions when serving), so no label time and no later interaction leaks into a feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from fusionrec.core.data import SplitData
from fusionrec.core.engine.two_tower import Features, Histories
from fusionrec.core.errors import DataError
from fusionrec.core.ranking import RankingFeatures

UserVectorFn = Callable[[npt.NDArray[np.int64], Histories], torch.Tensor]
"""``(users, histories) → (len(users), d)`` user vectors, e.g. :meth:`TwoTowerScorer.user_vectors`."""
RetrieveFn = Callable[[torch.Tensor, Sequence[npt.NDArray[np.int64]], int], tuple[torch.Tensor, torch.Tensor]]
"""``(user vectors (B, d), items to exclude per user, n) → (items (B, n), scores (B, n))``: the retriever's top-n,
padded with -1 ids and -inf scores. :func:`exact_top_n` (inner products over all items) is the default."""
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class RankerDataSettings:
    """How the ranker's data is built.

    Attributes:
        holdout: the last interactions of each training user held out as labels (the rest of train is history).
        candidates: the retriever's top-N per user.
        recent: how many of the user's last history items the modality similarities and tag overlap compare with.
        recent_fraction: the share of the history data's time range that counts as recent, for recent popularity.
        batch_size: users per retrieval batch.
    """

    holdout: int = 1
    candidates: int = 100
    recent: int = 10
    recent_fraction: float = 0.1
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.holdout < 1 or self.candidates < 1 or self.recent < 1 or self.batch_size < 1:
            raise DataError(
                f"ranker data: holdout, candidates, recent and batch_size must be ≥ 1; got holdout={self.holdout}, "
                f"candidates={self.candidates}, recent={self.recent}, batch_size={self.batch_size}"
            )
        if not 0.0 < self.recent_fraction <= 1.0:
            raise DataError(f"ranker data: recent_fraction must be in (0, 1], got {self.recent_fraction}")


@dataclass(frozen=True)
class ItemSource:
    """What the features are made of on the item side, and how a user becomes a vector.

    Attributes:
        item_vectors: ``(n_items, d)`` the retriever's item vectors.
        item_weights: ``(n_items, n_modalities)`` the fuser's modality weights (``(n_items, 0)`` without a fuser).
        modalities: modality key → ``(vectors (n_items, dim), present (n_items,))``, the per-modality features.
        user_vectors: user vectors from histories.
        n_users: users of the data (histories are indexed by user id).
        item_tags: each item's tags or genres (see :func:`item_tags_from`), or ``None`` for no ``tag_overlap``.
    """

    item_vectors: torch.Tensor
    item_weights: torch.Tensor
    modalities: Features
    user_vectors: UserVectorFn
    n_users: int
    item_tags: Sequence[frozenset[str]] | None = None

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    @cached_property
    def _units(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for key, (vectors, present) in self.modalities.items():
            mask = torch.tensor(np.asarray(present), dtype=torch.bool)  # copies: cached arrays are read-only
            matrix = torch.tensor(np.asarray(vectors), dtype=torch.float32)
            out[key] = (F.normalize(matrix, dim=1) * mask.to(torch.float32).unsqueeze(1), mask)
        return out

    def unit_modalities(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per modality, ``(L2-normalised vectors, zero where absent; present mask)``, computed once."""
        return self._units

    @cached_property
    def _tags(self) -> torch.Tensor | None:
        return None if self.item_tags is None else _tag_matrix(self.item_tags)

    def tag_matrix(self) -> torch.Tensor | None:
        """``(n_items, n_tags)`` 0/1 tag matrix (computed once), or ``None`` without tags."""
        return self._tags

    def extra_names(self) -> tuple[str, ...]:
        """The names of the extra feature columns, in order."""
        names = ["retrieval_rank", *(f"similarity_{key}" for key in self.modalities)]
        names += ["popularity", "recent_popularity", "item_age_days", "user_activity", "days_since_last"]
        return tuple(names + (["tag_overlap"] if self.item_tags is not None else []))


@dataclass(frozen=True)
class HistoryStats:
    """Statistics of a history frame: per-item counts and first times, per-user last times, and "now".

    Attributes:
        popularity: ``(n_items,)`` interactions per item.
        recent_popularity: ``(n_items,)`` interactions per item in the last ``recent_fraction`` of the time range.
        first_seen: ``(n_items,)`` each item's first interaction time (``now`` for an item never seen).
        last_seen: ``(n_users,)`` each user's last interaction time (``now`` for a user with none).
        activity: ``(n_users,)`` interactions per user.
        now: the frame's last timestamp.
    """

    popularity: torch.Tensor
    recent_popularity: torch.Tensor
    first_seen: torch.Tensor
    last_seen: torch.Tensor
    activity: torch.Tensor
    now: float

    @classmethod
    def of(cls, history: pd.DataFrame, n_users: int, n_items: int, recent_fraction: float) -> HistoryStats:
        """The statistics of ``history`` (interaction rows with ``user``, ``item`` and ``timestamp``)."""
        users, items = history["user"].to_numpy(np.int64), history["item"].to_numpy(np.int64)
        times = history["timestamp"].to_numpy(np.float64)
        if len(times) == 0:
            raise DataError("ranker data: the history is empty; there is nothing to compute features from")
        start, now = float(times.min()), float(times.max())
        recent = times >= now - recent_fraction * (now - start)
        first = np.full(n_items, now)
        np.minimum.at(first, items, times)
        last = np.full(n_users, -np.inf)
        np.maximum.at(last, users, times)
        return cls(
            popularity=torch.from_numpy(np.bincount(items, minlength=n_items).astype(np.float32)),
            recent_popularity=torch.from_numpy(np.bincount(items[recent], minlength=n_items).astype(np.float32)),
            first_seen=torch.from_numpy(first),
            last_seen=torch.from_numpy(np.where(np.isfinite(last), last, now)),
            activity=torch.from_numpy(np.bincount(users, minlength=n_users).astype(np.float32)),
            now=now,
        )


@dataclass
class RankerTrainingSet:
    """The ranker's labelled pairs and what they were made from.

    Attributes:
        features: the pairs' features, one group per user.
        labels: ``(n,)`` 1 for a held-out item among the candidates, else 0.
        users: ``(n,)`` the user of each pair.
        items: ``(n,)`` the candidate item of each pair.
        history: the train interactions the features were computed from (train minus ``held_out``).
        held_out: the train interactions held out as labels (each user's last ``holdout``).
        info: counts for the run's report.
    """

    features: RankingFeatures
    labels: torch.Tensor
    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    history: pd.DataFrame
    held_out: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def time_slice(train: pd.DataFrame, holdout: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train`` split into (history, held out): each user's last ``holdout`` interactions are held out when the user
    has more than ``holdout``; a user with fewer stays in the history only. Order: by timestamp, equal timestamps in
    the data's order (the frame's index), as :meth:`Histories.from_frame` and the split order them."""
    ordered = train.sort_index(kind="stable").sort_values(["user", "timestamp"], kind="stable")
    from_end = ordered.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    counts = ordered.groupby("user", sort=False)["item"].transform("size").to_numpy()
    held = (from_end < holdout) & (counts > holdout)
    return ordered[~held], ordered[held]


def build_training_set(
    split: SplitData,
    source: ItemSource,
    settings: RankerDataSettings | None = None,
    retrieve: RetrieveFn | None = None,
) -> RankerTrainingSet:
    """The ranker's training pairs from the retriever's candidates on a time slice of ``split.train`` (see the
    module docstring). ``split.valid`` and ``split.test`` are not read.

    Raises:
        DataError: no training user has enough interactions, or no candidate is a held-out item.
    """
    return build_from(split.train, source, settings, retrieve)


def build_from(
    train: pd.DataFrame,
    source: ItemSource,
    settings: RankerDataSettings | None = None,
    retrieve: RetrieveFn | None = None,
) -> RankerTrainingSet:
    """:func:`build_training_set` over any training frame (with ``train.refit``: train + valid, for the ranker the
    refit model serves with)."""
    settings = settings or RankerDataSettings()
    history, held_out = time_slice(train, settings.holdout)
    users = np.unique(held_out["user"].to_numpy(np.int64))
    if len(users) == 0:
        raise DataError(
            f"ranker data: no training user has more than holdout={settings.holdout} train interactions, so none "
            "can hold any out; lower holdout"
        )
    histories = Histories.from_frame(history, source.n_users)
    stats = HistoryStats.of(history, source.n_users, source.n_items, settings.recent_fraction)
    parts: list[tuple[RankingFeatures, torch.Tensor, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    for start in range(0, len(users), settings.batch_size):
        batch = users[start : start + settings.batch_size]
        items, scores = retrieve_candidates(source, batch, histories, settings.candidates, retrieve)
        features, valid = candidate_features(source, batch, histories, stats, items, scores, settings)
        truth = _membership(held_out, batch, source.n_items).gather(1, items.clamp(min=0))[valid]
        rows = torch.arange(len(batch)).unsqueeze(1).expand_as(items)[valid].numpy()
        parts.append((features, truth.float(), batch[rows], items[valid].numpy()))
    features = _concat([p[0] for p in parts], group_offsets=range(0, len(users), settings.batch_size))
    labels = torch.cat([p[1] for p in parts])
    positives = int(labels.sum())
    if positives == 0:
        raise DataError(
            f"ranker data: none of the {len(labels)} candidates is a held-out item; raise candidates "
            f"(now {settings.candidates}) or train the retriever longer"
        )
    info = {
        "users": len(users),
        "pairs": len(labels),
        "positives": positives,
        "held_out": len(held_out),
        "recall_of_candidates": positives / len(held_out),
        "history": len(history),
        "candidates": settings.candidates,
        "holdout": settings.holdout,
    }
    pair_users = np.concatenate([p[2] for p in parts])
    return RankerTrainingSet(
        features, labels, pair_users, np.concatenate([p[3] for p in parts]), history, held_out, info
    )


def retrieve_candidates(
    source: ItemSource,
    users: npt.NDArray[np.int64],
    histories: Histories,
    n: int,
    retrieve: RetrieveFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's top-``n`` candidates ``(B, n)`` and retrieval scores ``(B, n)``, their history items excluded
    (padding: -1 ids, -inf scores)."""
    vectors = source.user_vectors(users, histories)
    exclude = [histories.items[histories.offsets[u] : histories.offsets[u + 1]].numpy() for u in users]
    return (retrieve or exact_top_n(source.item_vectors))(vectors, exclude, n)


def exact_top_n(item_vectors: torch.Tensor) -> RetrieveFn:
    """A :data:`RetrieveFn` scoring every item by its inner product with the user vector (what a flat index does)."""

    def retrieve(
        user_vectors: torch.Tensor, exclude: Sequence[npt.NDArray[np.int64]], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = user_vectors.float() @ item_vectors.float().T
        rows = np.repeat(np.arange(len(exclude)), [len(e) for e in exclude])
        if len(rows):
            scores[torch.from_numpy(rows), torch.from_numpy(np.concatenate(exclude))] = float("-inf")
        top_scores, top_items = scores.topk(min(n, scores.shape[1]), dim=1)
        top_items = torch.where(torch.isneginf(top_scores), -1, top_items)
        return top_items, top_scores

    return retrieve


def candidate_features(
    source: ItemSource,
    users: npt.NDArray[np.int64],
    histories: Histories,
    stats: HistoryStats,
    items: torch.Tensor,
    scores: torch.Tensor,
    settings: RankerDataSettings | None = None,
) -> tuple[RankingFeatures, torch.Tensor]:
    """The ranking features of each user's real candidates (serving, evaluation and training alike).

    Args:
        source: item vectors, modality features, tags and the user-vector function.
        users: ``(B,)`` user ids.
        histories: the users' histories (only these are read: the features of a user depend on nothing later).
        stats: :class:`HistoryStats` of the same history data.
        items: ``(B, N)`` candidate ids, -1 for padding.
        scores: ``(B, N)`` retrieval scores, -inf for padding.
        settings: ``recent`` is read from it.

    Returns:
        The features of the real candidates, in row-major order (groups: the row of ``users``), and the ``(B, N)``
        mask of real candidates.
    """
    valid = (items >= 0) & torch.isfinite(scores)
    rows = torch.arange(len(users)).unsqueeze(1).expand_as(items)[valid]
    picked = items[valid]
    user_vectors = source.user_vectors(np.asarray(users, dtype=np.int64), histories).float()
    features = RankingFeatures(
        user=user_vectors[rows],
        item=source.item_vectors[picked].float(),
        modality_weights=source.item_weights[picked].float(),
        retrieval_score=scores[valid].float(),
        extra=extra_columns(source, users, histories, stats, items, valid, settings),
        extra_names=source.extra_names(),
        groups=rows.long(),
    )
    return features, valid


def extra_columns(
    source: ItemSource,
    users: npt.NDArray[np.int64] | None,
    histories: Histories,
    stats: HistoryStats,
    items: torch.Tensor,
    valid: torch.Tensor,
    settings: RankerDataSettings | None = None,
) -> torch.Tensor:
    """The :attr:`ItemSource.extra_names` columns ``(n, f)`` of the real candidates (``valid``), row-major.

    Args:
        users: ``(B,)`` user ids, rows of ``histories`` and of ``stats``; ``None`` for histories given at request
            time (anonymous users, rows ``0..B-1`` of ``histories``): their activity is their history's length and
            their days since the last interaction 0 (they are active now).
        items: ``(B, N)`` candidate ids; ``valid``: ``(B, N)`` which are real.
    """
    settings = settings or RankerDataSettings()
    anonymous = users is None
    index = torch.arange(items.shape[0]) if users is None else torch.as_tensor(np.asarray(users, dtype=np.int64))
    rows = torch.arange(items.shape[0]).unsqueeze(1).expand_as(items)[valid]
    picked = items[valid]
    recent = histories.last(index, settings.recent)  # (B, R), -1 padded
    columns = [torch.arange(1, items.shape[1] + 1, dtype=torch.float32).unsqueeze(0).expand_as(items)[valid]]
    for unit, present in source.unit_modalities().values():
        columns.append(_similarity(unit, present, recent, rows, picked))
    if anonymous:
        activity = histories.lengths()[index].float()
        days_since = torch.zeros(len(index))
    else:
        activity = stats.activity[index]
        days_since = ((stats.now - stats.last_seen[index].float()) / SECONDS_PER_DAY).clamp(min=0)
    columns += [
        torch.log1p(stats.popularity[picked]),
        torch.log1p(stats.recent_popularity[picked]),
        ((stats.now - stats.first_seen[picked]) / SECONDS_PER_DAY).clamp(min=0).float(),
        torch.log1p(activity)[rows],
        days_since[rows].float(),
    ]
    tags = source.tag_matrix()
    if tags is not None:
        columns.append(_tag_overlap(tags, recent, rows, picked))
    return torch.stack([c.float() for c in columns], dim=1)


@dataclass(frozen=True)
class RerankInputs:
    """What :class:`~fusionrec.core.engine.two_stage.TwoStage` reranks with besides its own vectors: the extra
    feature columns of :func:`extra_columns`, from the item side (``source``) and the statistics of the interactions
    the model may know (``stats``: train for validation, train + valid for test, everything when serving).

    Attributes:
        source: the item side (its ``user_vectors`` is not used: the two-stage path has the query vectors).
        stats: the known interactions' statistics.
        settings: ``recent`` and ``recent_fraction``.
    """

    source: ItemSource
    stats: HistoryStats
    settings: RankerDataSettings = field(default_factory=RankerDataSettings)

    @classmethod
    def of(cls, source: ItemSource, known: pd.DataFrame, settings: RankerDataSettings | None = None) -> RerankInputs:
        settings = settings or RankerDataSettings()
        return cls(source, HistoryStats.of(known, source.n_users, source.n_items, settings.recent_fraction), settings)

    def at(self, known: pd.DataFrame) -> RerankInputs:
        """The same inputs with the statistics of another set of known interactions (an evaluation cutoff)."""
        stats = HistoryStats.of(known, self.source.n_users, self.source.n_items, self.settings.recent_fraction)
        return replace(self, stats=stats)

    @property
    def names(self) -> tuple[str, ...]:
        return self.source.extra_names()

    def columns(
        self, users: npt.NDArray[np.int64] | None, histories: Histories, items: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        return extra_columns(self.source, users, histories, self.stats, items, valid, self.settings)


def item_tags_from(items: pd.DataFrame, columns: Iterable[str] = ("genres", "tags")) -> list[frozenset[str]] | None:
    """Each item's tags from the ``items`` table's tag-like columns (comma- or ``|``-separated, lower-cased,
    prefixed by the column: ``genres:comedy``), or ``None`` when the table has none of ``columns``."""
    present = [c for c in columns if c in items.columns]
    if not present:
        return None
    tags: list[set[str]] = [set() for _ in range(len(items))]
    for column in present:
        for i, cell in enumerate(items[column].fillna("").astype(str)):
            parts = cell.replace("|", ",").split(",")
            tags[i].update(f"{column}:{p.strip().lower()}" for p in parts if p.strip())
    return [frozenset(t) for t in tags]


def _similarity(
    unit: torch.Tensor, present: torch.Tensor, recent: torch.Tensor, rows: torch.Tensor, picked: torch.Tensor
) -> torch.Tensor:
    """Cosine of each candidate's modality vector to the mean normalised vector of its user's recent items
    (``unit``: L2-normalised vectors, zero where the modality is absent)."""
    has = (recent >= 0) & present[recent.clamp(min=0)]
    profile = (unit[recent.clamp(min=0)] * has.unsqueeze(-1)).sum(dim=1)
    profile = F.normalize(profile, dim=1)  # zero stays zero: users without the modality get 0
    return (profile[rows] * unit[picked]).sum(dim=1)


def _tag_matrix(item_tags: Sequence[frozenset[str]]) -> torch.Tensor:
    vocabulary = {tag: j for j, tag in enumerate(sorted(set().union(*item_tags)))}
    matrix = torch.zeros(len(item_tags), max(len(vocabulary), 1))
    for i, tags in enumerate(item_tags):
        matrix[i, [vocabulary[t] for t in tags]] = 1.0
    return matrix


def _tag_overlap(tags: torch.Tensor, recent: torch.Tensor, rows: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """Jaccard overlap of each candidate's tags with the union of its user's recent items' tags."""
    user_tags = (tags[recent.clamp(min=0)] * (recent >= 0).unsqueeze(-1)).amax(dim=1)  # (B, T)
    candidate = tags[picked]
    both = (candidate * user_tags[rows]).sum(dim=1)
    either = candidate.sum(dim=1) + user_tags[rows].sum(dim=1) - both
    return torch.where(either > 0, both / either.clamp(min=1), 0.0)


def _membership(rows: pd.DataFrame, users: npt.NDArray[np.int64], n_items: int) -> torch.Tensor:
    """``(B, n_items)`` bool: which items each of ``users`` has in ``rows``."""
    mine = rows[rows["user"].isin(users)]
    position = pd.Series(np.arange(len(users)), index=users)
    truth = torch.zeros(len(users), n_items, dtype=torch.bool)
    r = torch.from_numpy(position[mine["user"].to_numpy()].to_numpy(np.int64, copy=True))
    truth[r, torch.from_numpy(mine["item"].to_numpy(np.int64, copy=True))] = True
    return truth


def _concat(parts: Sequence[RankingFeatures], group_offsets: Iterable[int]) -> RankingFeatures:
    """Concatenate batches' features, shifting each batch's group ids (rows of the batch) by its first user's
    position, so a group id is the user's position among all users."""
    return RankingFeatures(
        user=torch.cat([p.user for p in parts]),
        item=torch.cat([p.item for p in parts]),
        modality_weights=torch.cat([p.modality_weights for p in parts]),
        retrieval_score=torch.cat([p.retrieval_score for p in parts]),
        extra=torch.cat([p.extra for p in parts if p.extra is not None]),
        extra_names=parts[0].extra_names,
        groups=torch.cat([p.groups + o for p, o in zip(parts, group_offsets, strict=True) if p.groups is not None]),
    )


def features_for(
    source: ItemSource,
    known: pd.DataFrame,
    users: npt.NDArray[np.int64],
    items: torch.Tensor,
    scores: torch.Tensor,
    settings: RankerDataSettings | None = None,
) -> tuple[RankingFeatures, torch.Tensor]:
    """:func:`candidate_features` at serving or evaluation time: histories and statistics from ``known`` (the
    interactions the model may see: train for validation, train + valid for test)."""
    settings = settings or RankerDataSettings()
    histories = Histories.from_frame(known, source.n_users)
    stats = HistoryStats.of(known, source.n_users, source.n_items, settings.recent_fraction)
    return candidate_features(source, users, histories, stats, items, scores, settings)


__all__ = [
    "HistoryStats",
    "ItemSource",
    "RankerDataSettings",
    "RankerTrainingSet",
    "RerankInputs",
    "RetrieveFn",
    "UserVectorFn",
    "build_from",
    "build_training_set",
    "candidate_features",
    "exact_top_n",
    "extra_columns",
    "features_for",
    "item_tags_from",
    "retrieve_candidates",
    "time_slice",
]
