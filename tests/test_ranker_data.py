"""The reranker's training set: the retriever's candidates on a time slice of train, never valid or test."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import torch

from fusionrec.core.assembly.loading import load, run_split
from fusionrec.core.data import SplitData
from fusionrec.core.engine.ranker_data import (
    HistoryStats,
    ItemSource,
    RankerDataSettings,
    build_training_set,
    candidate_features,
    exact_top_n,
    features_for,
    item_tags_from,
    time_slice,
)
from fusionrec.core.engine.two_tower import Histories
from fusionrec.core.errors import DataError
from fusionrec.registry import get_registry

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"
DAY = 86_400


class MeanOfHistory:
    """A user tower stand-in: the mean vector of the user's last 20 history items; records every item it reads."""

    def __init__(self, item_vectors: torch.Tensor) -> None:
        self.item_vectors = item_vectors
        self.seen: set[tuple[int, int]] = set()

    def __call__(self, users: npt.NDArray[np.int64], histories: Histories) -> torch.Tensor:
        index = torch.as_tensor(users)
        last = histories.last(index, 20)
        for user, row in zip(users.tolist(), last.tolist(), strict=True):
            self.seen.update((user, item) for item in row if item >= 0)
        mask = (last >= 0).unsqueeze(-1).float()
        return (self.item_vectors[last.clamp(min=0)] * mask).sum(1) / mask.sum(1).clamp(min=1)


def random_source(n_users: int, n_items: int, tags: list[frozenset[str]] | None, seed: int = 0) -> ItemSource:
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n_items, 16, generator=gen)
    image_present = np.ones(n_items, dtype=bool)
    image_present[::7] = False
    return ItemSource(
        item_vectors=vectors,
        item_weights=torch.softmax(torch.randn(n_items, 2, generator=gen), dim=1),
        modalities={
            "image": (torch.randn(n_items, 12, generator=gen).numpy(), image_present),
            "text": (torch.randn(n_items, 8, generator=gen).numpy(), np.ones(n_items, dtype=bool)),
        },
        user_vectors=MeanOfHistory(vectors),
        n_users=n_users,
        item_tags=tags,
    )


@pytest.fixture(scope="module")
def quickstart() -> tuple[SplitData, ItemSource]:
    loaded = load(QUICKSTART, get_registry())
    split = run_split(loaded)
    return split, random_source(loaded.data.n_users, loaded.data.n_items, item_tags_from(loaded.data.items))


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def test_no_valid_or_test_interaction_is_a_feature_or_a_label(quickstart: tuple[SplitData, ItemSource]) -> None:
    split, source = quickstart
    assert isinstance(source.user_vectors, MeanOfHistory)
    source.user_vectors.seen.clear()
    data = build_training_set(split, source, RankerDataSettings(holdout=1, candidates=50))
    later = pd.concat([split.valid, split.test])
    # rows: history and labels are train rows, together exactly train, and none is a valid or test row
    assert set(data.history.index) | set(data.held_out.index) == set(split.train.index)
    assert not set(data.history.index) & set(data.held_out.index)
    assert not (set(data.history.index) | set(data.held_out.index)) & set(later.index)
    # every label pair is a held-out train interaction, never a valid/test one
    is_label = data.labels.numpy() == 1
    positives = set(zip(data.users[is_label].tolist(), data.items[is_label].tolist(), strict=True))
    assert positives and positives <= pairs(data.held_out)
    assert not positives & pairs(later)
    # every history interaction the features read (through the user tower) is a history row, never valid/test
    assert source.user_vectors.seen and source.user_vectors.seen <= pairs(data.history)
    assert not source.user_vectors.seen & pairs(later)
    # labels come after the history they are predicted from; candidates never repeat the history
    last = data.history.groupby("user")["timestamp"].max()
    assert (data.held_out["timestamp"].to_numpy() >= last[data.held_out["user"]].to_numpy()).all()
    assert not set(zip(data.users.tolist(), data.items.tolist(), strict=True)) & pairs(data.history)
    # and nothing changes when valid and test are replaced by anything else
    scrambled = replace(split, valid=split.test.sample(frac=1.0, random_state=1), test=split.train.iloc[:0])
    again = build_training_set(scrambled, source, RankerDataSettings(holdout=1, candidates=50))
    assert torch.equal(again.labels, data.labels) and again.features.extra is not None
    assert data.features.extra is not None and torch.equal(again.features.extra, data.features.extra)


def test_the_training_set_is_grouped_by_user_and_has_every_feature(quickstart: tuple[SplitData, ItemSource]) -> None:
    split, source = quickstart
    data = build_training_set(split, source, RankerDataSettings(holdout=2, candidates=30, batch_size=100))
    features = data.features
    assert features.extra_names == (
        "retrieval_rank", "similarity_image", "similarity_text", "popularity", "recent_popularity",
        "item_age_days", "user_activity", "days_since_last", "tag_overlap",
    )  # fmt: skip
    assert features.extra is not None and features.groups is not None
    assert features.extra.shape == (len(data.labels), 9) and torch.isfinite(features.extra).all()
    # one group per user, across retrieval batches of 100 users
    by_group = pd.DataFrame({"group": features.groups.numpy(), "user": data.users})
    assert (by_group.groupby("group")["user"].nunique() == 1).all()
    assert by_group["group"].nunique() == by_group["user"].nunique() == data.info["users"]
    assert (data.held_out.groupby("user").size() == 2).all()
    assert data.info["positives"] == int(data.labels.sum()) > 0
    assert 0 < data.info["recall_of_candidates"] <= 1
    similarity = features.extra[:, 1:3]
    assert bool((similarity.abs() <= 1 + 1e-5).all())
    assert features.extra[:, 0].min() == 1 and features.extra[:, 0].max() == 30


def test_serving_features_are_built_by_the_same_function(quickstart: tuple[SplitData, ItemSource]) -> None:
    split, source = quickstart
    settings = RankerDataSettings(candidates=20)
    data = build_training_set(split, source, settings)
    users = np.unique(data.users)[:40]
    histories = Histories.from_frame(data.history, source.n_users)
    vectors = source.user_vectors(users, histories)
    exclude = [histories.items[histories.offsets[u] : histories.offsets[u + 1]].numpy() for u in users]
    items, scores = exact_top_n(source.item_vectors)(vectors, exclude, 20)
    served, valid = features_for(source, data.history, users, items, scores, settings)
    rows = np.isin(data.users, users)
    assert served.extra is not None and data.features.extra is not None
    torch.testing.assert_close(served.extra, data.features.extra[torch.from_numpy(rows)])
    torch.testing.assert_close(served.retrieval_score, data.features.retrieval_score[torch.from_numpy(rows)])
    assert bool(valid.all())


def test_features_on_a_hand_made_history() -> None:
    history = pd.DataFrame(
        {
            "user": [0, 0, 0, 1, 1],
            "item": [0, 1, 2, 0, 3],
            "timestamp": [0, 10 * DAY, 20 * DAY, 95 * DAY, 100 * DAY],
        }
    )
    tags = [frozenset({"a", "b"}), frozenset({"b"}), frozenset({"c"}), frozenset({"a", "c"}), frozenset()]
    unit = torch.eye(5)
    source = ItemSource(
        item_vectors=unit,
        item_weights=torch.full((5, 1), 1.0),
        modalities={"text": (unit.numpy(), np.array([True, True, True, True, False]))},
        user_vectors=lambda users, histories: torch.ones(len(users), 5),
        n_users=2,
        item_tags=tags,
    )
    settings = RankerDataSettings(recent=2, recent_fraction=0.1)  # recent window: the last 10 days (90..100)
    stats = HistoryStats.of(history, 2, 5, settings.recent_fraction)
    assert stats.popularity.tolist() == [2, 1, 1, 1, 0] and stats.recent_popularity.tolist() == [1, 0, 0, 1, 0]
    items = torch.tensor([[3, 4], [1, -1]])
    scores = torch.tensor([[2.0, 1.0], [0.5, float("-inf")]])
    features, valid = features_for(source, history, np.array([0, 1]), items, scores, settings)
    assert valid.tolist() == [[True, True], [True, False]]
    extra = dict(zip(features.extra_names, features.extra.T.tolist(), strict=True))  # type: ignore[union-attr]
    assert extra["retrieval_rank"] == [1, 2, 1]
    # user 0's two recent items are 1 and 2: profile (e1 + e2)/√2; item 3 is orthogonal, item 4 has no text
    assert extra["similarity_text"] == pytest.approx([0.0, 0.0, 0.0])
    assert extra["popularity"] == pytest.approx([math.log(2), 0.0, math.log(2)])
    assert extra["recent_popularity"] == pytest.approx([math.log(2), 0.0, 0.0])
    assert extra["item_age_days"] == pytest.approx([0.0, 0.0, 90.0])  # now = day 100: item 3 new, 1 from day 10
    assert extra["user_activity"] == pytest.approx([math.log(4), math.log(4), math.log(3)])
    assert extra["days_since_last"] == pytest.approx([80.0, 80.0, 0.0])
    # user 0's recent tags {b, c}: item 3 {a, c} → 1/3, item 4 {} → 0; user 1's {a, c} ∪ {a, b}: item 1 {b} → 1/3
    assert extra["tag_overlap"] == pytest.approx([1 / 3, 0.0, 1 / 3])
    assert features.groups is not None and features.groups.tolist() == [0, 0, 1]


def test_the_time_slice_keeps_short_users_in_the_history() -> None:
    train = pd.DataFrame({"user": [0, 0, 0, 1], "item": [5, 4, 3, 9], "timestamp": [3, 1, 2, 7]})
    history, held_out = time_slice(train, holdout=1)
    assert held_out[["user", "item"]].values.tolist() == [[0, 5]]
    assert sorted(history["item"].tolist()) == [3, 4, 9]
    history, held_out = time_slice(train, holdout=2)
    assert sorted(held_out["item"].tolist()) == [3, 5]


def test_bad_settings_and_data_are_data_errors(quickstart: tuple[SplitData, ItemSource]) -> None:
    split, source = quickstart
    with pytest.raises(DataError, match="holdout, candidates, recent and batch_size must be ≥ 1"):
        RankerDataSettings(holdout=0)
    with pytest.raises(DataError, match=r"recent_fraction must be in \(0, 1\]"):
        RankerDataSettings(recent_fraction=0.0)
    with pytest.raises(DataError, match="no training user has more than holdout=100000"):
        build_training_set(split, source, RankerDataSettings(holdout=100_000))
    with pytest.raises(DataError, match="the history is empty"):
        HistoryStats.of(split.train.iloc[:0], 1, 1, 0.1)


def test_item_tags_from_genres_and_tags_columns() -> None:
    items = pd.DataFrame({"genres": ["Comedy|Drama", ""], "tags": ["pixar, Fun", None], "title": ["x", "y"]})
    assert item_tags_from(items) == [
        frozenset({"genres:comedy", "genres:drama", "tags:pixar", "tags:fun"}),
        frozenset(),
    ]
    assert item_tags_from(items[["title"]]) is None


def test_a_lightgbm_ranker_fits_the_training_set(quickstart: tuple[SplitData, ItemSource]) -> None:
    split, source = quickstart
    data = build_training_set(split, source, RankerDataSettings(candidates=30))
    ranker = get_registry().create("ranker", "lightgbm", num_boost_round=10, vectors=False)
    ranker.fit(data.features, data.labels)
    scores = ranker.score(data.features)
    assert scores.shape == data.labels.shape and torch.isfinite(scores).all()
    _ = candidate_features  # the function serving calls; exercised through features_for above
