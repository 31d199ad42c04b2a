"""The split protocols: the exact temporal rule, seeded determinism, cold items, and files round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from data_fixtures import write_movielens, write_pipeline

from fusionrec.core import cli
from fusionrec.core.data import InteractionData, SplitData
from fusionrec.core.errors import ConfigError, DataError
from fusionrec.registry import get_registry, hookimpl
from fusionrec.registry.data_contracts import check_split_data


def split(data: InteractionData, name: str, **params: Any) -> SplitData:
    result = get_registry().create("split", name, **params).split(data)
    check_split_data(data, result, name)
    return result


def pairs(data: InteractionData, rows: pd.DataFrame) -> list[tuple[int, int, int]]:
    """(original user, original item, timestamp) of each row, sorted."""
    frame = data.with_original_ids(rows)
    return sorted(zip(frame.userId.tolist(), frame.itemId.tolist(), frame.timestamp.tolist(), strict=True))


@pytest.fixture
def small(tmp_path: Path) -> InteractionData:
    """The fixture folder of data_fixtures: users 10 (6 ratings, with ties), 20 (5) and 30 (2)."""
    ds = get_registry().create("dataset", "movielens", path=str(write_movielens(tmp_path / "ml")), images=None)
    return ds.load()  # type: ignore[no-any-return]


def generated(tmp_path: Path, sizes: list[int], n_items: int = 80) -> InteractionData:
    """User u has sizes[u] interactions with distinct items, at times that tie in pairs."""
    rows = [
        {"user_id": 1000 + u, "item_id": (u * 13 + k * 7) % n_items, "timestamp": 500 + k // 2}
        for u, n in enumerate(sizes)
        for k in range(n)
    ]
    pd.DataFrame({"item_id": range(n_items)}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "events.csv", index=False)
    ds = get_registry().create(
        "dataset", "table", items=str(tmp_path / "items.csv"), interactions=str(tmp_path / "events.csv")
    )
    return ds.load()  # type: ignore[no-any-return]


# --- temporal -------------------------------------------------------------------------------------------------


def test_temporal_matches_the_hand_computed_split(small: InteractionData) -> None:
    result = split(small, "temporal", tie_break="item_id")
    # user 10, sorted by (timestamp, movieId): 7@50, 3@100, 5@100, 1@200, 2@200, 7@300 → n=6, 1 test, 1 valid;
    # with tie_break: item_id the tie at 200 is broken by movie id, so movie 2 is later than movie 1
    # user 20: 1@10, 2@20, 3@30, 5@40, 7@50 → n=5, 1 test, 1 valid; user 30: n=2 < 5, train only
    assert pairs(small, result.test) == [(10, 7, 300), (20, 7, 50)]
    assert pairs(small, result.valid) == [(10, 2, 200), (20, 5, 40)]
    assert pairs(small, result.train) == [
        (10, 1, 200), (10, 3, 100), (10, 5, 100), (10, 7, 50),
        (20, 1, 10), (20, 2, 20), (20, 3, 30),
        (30, 1, 5), (30, 2, 6),
    ]  # fmt: skip
    assert result.candidate_items is None
    assert result.info == {"users": 3, "users_evaluated": 2, "users_train_only": 1, "min_interactions": 5}


def test_equal_timestamps_keep_file_order_through_the_split_and_the_history(tmp_path: Path) -> None:
    """A basket bought the same day (one timestamp) stays in the order the file lists it, not by item id."""
    from fusionrec.core.engine.two_tower import Histories

    # one user, 8 interactions: two same-day baskets listed in descending item-id order, rows shuffled across users
    rows = [("u1", 50, 1), ("u2", 11, 1), ("u1", 40, 1), ("u1", 30, 1), ("u2", 12, 2), ("u1", 20, 2),
            ("u1", 60, 2), ("u2", 13, 3), ("u1", 10, 2), ("u2", 14, 4), ("u1", 70, 3), ("u1", 5, 3)]  # fmt: skip
    pd.DataFrame({"item_id": range(100)}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(tmp_path / "events.csv", index=False)
    data = (
        get_registry()
        .create("dataset", "table", items=str(tmp_path / "items.csv"), interactions=str(tmp_path / "events.csv"))
        .load()
    )
    u1 = data.interactions[data.interactions.user == 0]
    in_file = [50, 40, 30, 20, 60, 10, 70, 5]
    assert data.item_ids[u1.item].tolist() == in_file  # the data model keeps the file order within a timestamp
    # temporal, n=8: 1 test, 1 valid, the end of the day-3 basket as the file lists it: [70, 5]
    result = split(data, "temporal", valid=0.125, test=0.125)
    assert pairs(data, result.test)[0][:2] == ("u1", 5) and pairs(data, result.valid)[0][:2] == ("u1", 70)
    by_item = split(data, "temporal", valid=0.125, test=0.125, tie_break="item_id")
    assert pairs(data, by_item.test)[0][:2] == ("u1", 70) and pairs(data, by_item.valid)[0][:2] == ("u1", 5)
    # the history of the training part, read by the user tower, is in file order too (even from a shuffled frame)
    train = result.train.sample(frac=1.0, random_state=0)
    history = Histories.from_frame(train, data.n_users)
    first = history.items[history.offsets[0] : history.offsets[1]].tolist()
    assert data.item_ids[first].tolist() == in_file[:-2]


SIZES = [4, 5, 9, 10, 19, 20, 29, 30, 70]


def test_temporal_counts_are_max_1_floor_share_n(tmp_path: Path) -> None:
    data = generated(tmp_path, SIZES)
    result = split(data, "temporal")
    per_user = {name: part.groupby("user").size().reindex(range(len(SIZES)), fill_value=0).tolist()
                for name, part in result.parts().items()}  # fmt: skip
    expected = [0 if n < 5 else max(1, n // 10) for n in SIZES]  # 70 → 7 exactly: 0.1 × 70 in floating point is 7.000…1
    assert per_user["test"] == expected and per_user["valid"] == expected
    assert per_user["train"] == [n - 2 * e for n, e in zip(SIZES, expected, strict=True)]
    # the held-out interactions are each user's latest
    for user in range(len(SIZES)):
        train = result.train[result.train.user == user]
        later = pd.concat([result.valid, result.test])
        later = later[later.user == user]
        if len(later):
            assert train.timestamp.max() <= later.timestamp.min()


def test_temporal_shares_and_minimum_are_parameters(tmp_path: Path) -> None:
    data = generated(tmp_path, SIZES)
    result = split(data, "temporal", valid=0.0, test=0.3, min_interactions=10)
    assert len(result.valid) == 0
    sizes = result.test.groupby("user").size()
    assert sizes.to_dict() == {u: max(1, (3 * n) // 10) for u, n in enumerate(SIZES) if n >= 10}


def test_split_params_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"valid \+ test must be below 1"):
        get_registry().spec("split", {"type": "temporal", "valid": 0.5, "test": 0.5})
    with pytest.raises(ConfigError, match="min_interactions must be at least 3 with valid: true"):
        get_registry().spec("split", {"type": "leave_last_out", "min_interactions": 2})
    with pytest.raises(ConfigError, match="test: Input should be greater than 0"):
        get_registry().spec("split", {"type": "cold_items", "test": 0})


def test_the_dataset_carries_its_configured_split(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    spec = get_registry().spec(
        "dataset", {"type": "movielens", "path": str(root), "split": {"type": "leave_last_out", "valid": False}}
    )
    dataset = get_registry().build(spec)
    assert type(dataset.split).__name__ == "LeaveLastOutSplit" and dataset.split.valid is False
    default = get_registry().build(get_registry().spec("dataset", {"type": "movielens", "path": str(root)}))
    assert type(default.split).__name__ == "TemporalSplit"


# --- random and leave_last_out --------------------------------------------------------------------------------


def test_random_is_seeded_and_keeps_the_temporal_proportions(tmp_path: Path) -> None:
    data = generated(tmp_path, SIZES)
    first, again, other = (split(data, "random", seed=s) for s in (3, 3, 4))
    for a, b in zip(first.parts().values(), again.parts().values(), strict=True):
        assert a.index.equals(b.index)
    assert not first.test.index.equals(other.test.index)
    temporal = split(data, "temporal")
    for name in ("train", "valid", "test"):
        ours = first.parts()[name].groupby("user").size()
        assert ours.equals(temporal.parts()[name].groupby("user").size())
    assert not first.test.index.equals(temporal.test.index)  # not the chronological choice


def test_leave_last_out(small: InteractionData) -> None:
    result = split(small, "leave_last_out")
    assert pairs(small, result.test) == [(10, 7, 300), (20, 7, 50)]
    assert pairs(small, result.valid) == [(10, 1, 200), (20, 5, 40)]  # the file lists 2@200, then 1@200
    result = split(small, "leave_last_out", tie_break="item_id")
    assert pairs(small, result.valid) == [(10, 2, 200), (20, 5, 40)]
    assert (result.train.user == 2).sum() == 2  # user 30 has 2 < 3 interactions
    result = split(small, "leave_last_out", valid=False, min_interactions=2)
    assert len(result.valid) == 0 and (30, 2, 6) in pairs(small, result.test)


# --- cold items -----------------------------------------------------------------------------------------------


def test_cold_items_holds_out_whole_items_and_ranks_among_them(tmp_path: Path) -> None:
    data = generated(tmp_path, SIZES)
    items = np.unique(data.interactions.item)
    result = split(data, "cold_items", seed=1)
    assert result.candidate_items is not None and result.valid_candidate_items is not None
    assert len(result.candidate_items) == int(0.2 * len(items)) and len(result.valid_candidate_items) == int(
        0.1 * len(items)
    )
    assert set(result.test.item) == set(result.candidate_items.tolist())  # every interaction of each cold item
    assert set(result.valid.item) == set(result.valid_candidate_items.tolist())
    assert not set(result.train.item) & (set(result.candidate_items) | set(result.valid_candidate_items))
    assert result.info["test_items"] == len(result.candidate_items)
    again = split(data, "cold_items", seed=1)
    assert np.array_equal(again.candidate_items, result.candidate_items)  # type: ignore[arg-type]
    other = split(data, "cold_items", seed=2)
    assert not np.array_equal(other.candidate_items, result.candidate_items)  # type: ignore[arg-type]


# --- files ----------------------------------------------------------------------------------------------------


def split_folder(tmp_path: Path, data_block: str, capsys: pytest.CaptureFixture[str]) -> Path:
    pipeline = write_pipeline(tmp_path, data_block, "export.yaml")
    out = tmp_path / "split"
    assert cli.main(["data", "split", str(pipeline), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def files_split(tmp_path: Path, root: Path, **params: Any) -> tuple[InteractionData, SplitData]:
    block = {"type": "files", **{k: str(v) if isinstance(v, Path) else v for k, v in params.items()}}
    spec = get_registry().spec("dataset", {"type": "movielens", "path": str(root), "images": None, "split": block})
    dataset = get_registry().build(spec)
    data = dataset.load()
    return data, dataset.split.split(data)


@pytest.mark.parametrize("protocol", ["{type: temporal}", "{type: random, seed: 5}", "{type: cold_items, test: 0.4}"])
def test_files_split_reads_back_the_data_split_output(
    tmp_path: Path, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_movielens(tmp_path / "ml")
    out = split_folder(tmp_path, f"{{type: movielens, path: ml, images: null, split: {protocol}}}", capsys)
    dataset = get_registry().build(
        get_registry().spec(
            "dataset", {"type": "movielens", "path": str(root), "images": None, "split": _block(protocol)}
        )
    )
    data = dataset.load()
    original = dataset.split.split(data)
    extra = {}
    if original.candidate_items is not None:
        extra = {"test_candidates": out / "test_candidates.csv", "valid_candidates": out / "valid_candidates.csv"}
    data2, again = files_split(
        tmp_path, root, train=out / "train.csv", valid=out / "valid.csv", test=out / "test.csv", **extra
    )
    check_split_data(data2, again, "files")
    for a, b in zip(original.parts().values(), again.parts().values(), strict=True):
        assert a.index.equals(b.index)
    for a, b in ((original.candidate_items, again.candidate_items), (original.valid_candidate_items,
                                                                      again.valid_candidate_items)):  # fmt: skip
        assert (a is None and b is None) or np.array_equal(a, b)  # type: ignore[arg-type]
    assert again.issues == [] and again.info["interactions_in_no_file"] == 0


def _block(protocol: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(protocol)  # type: ignore[no-any-return]


def test_files_split_reports_rows_it_cannot_place(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (tmp_path / "train.csv").write_text(
        "userId,itemId,timestamp\n10,7,50\n10,3,100\n99,1,5\n10,42,7\n10,1,999\n20,1,10\n"
    )
    (tmp_path / "test.csv").write_text("userId,itemId,timestamp\n10,7,300\n20,1,10\n")
    files = {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}
    with pytest.raises(DataError) as error:
        files_split(tmp_path, root, **files)
    message = str(error.value)
    assert "5 bad rows (on_error: raise):" in message
    assert f"  {tmp_path}/train.csv: 1 × unknown user (not in the data), e.g. row 4: userId '99'" in message
    assert f"  {tmp_path}/train.csv: 1 × unknown item (not in the data), e.g. row 5: itemId '42'" in message
    assert f"{tmp_path}/train.csv: 1 × no such interaction" in message and "e.g. row 6" in message
    assert f"{tmp_path}/train.csv: 1 × in two files" in message
    data, result = files_split(tmp_path, root, **files, on_error="drop")
    assert pairs(data, result.train) == [(10, 3, 100), (10, 7, 50)]
    assert pairs(data, result.test) == [(10, 7, 300)]
    reasons: dict[str, int] = {}
    for found in result.issues:
        reasons[found.reason] = reasons.get(found.reason, 0) + found.count
    assert reasons == {
        "unknown user": 1,
        "unknown item": 1,
        "no such interaction": 1,
        "in two files": 2,  # one row in each file
        "in no split file": 13 - 3,
    }


def test_files_split_can_match_on_user_and_item_only(tmp_path: Path) -> None:
    root = write_movielens(tmp_path / "ml")
    (tmp_path / "train.csv").write_text("userId,itemId\n20,1\n20,2\n")
    (tmp_path / "test.csv").write_text("userId,itemId\n10,7\n")
    data, result = files_split(tmp_path, root, train=tmp_path / "train.csv", test=tmp_path / "test.csv", timestamp=None)
    assert pairs(data, result.test) == [(10, 7, 50), (10, 7, 300)]  # both of user 10's ratings of movie 7
    with pytest.raises(DataError, match=r"train.csv: no column 'timestamp' \(timestamp; set `timestamp: null`"):
        files_split(tmp_path, root, train=tmp_path / "train.csv", test=tmp_path / "test.csv")


# --- the contracts can fail -----------------------------------------------------------------------------------


class _LossySplit:
    """Keeps only the first half of the rows in train (drops the rest)."""

    def split(self, data: InteractionData) -> SplitData:
        rows = data.interactions
        return SplitData(rows.iloc[: len(rows) // 2], rows.iloc[:0], rows.iloc[:0])


class _ShuffledSplit:
    """Puts a random tenth in test, unseeded."""

    def split(self, data: InteractionData) -> SplitData:
        rows = data.interactions
        test = rows.sample(frac=0.1)
        return SplitData(rows.drop(test.index), rows.iloc[:0], test)


class _CarelessDataset:
    split = _LossySplit()

    def load(self) -> InteractionData:
        raise FileNotFoundError("ratings.csv")


class _BadPlugin:
    @hookimpl
    def register_splits(self, register):  # type: ignore[no-untyped-def]
        register("bad.lossy", _LossySplit)
        register("bad.unseeded", _ShuffledSplit)

    @hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("bad.careless", _CarelessDataset)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("split", "bad.lossy", "a split must partition its input"),
        ("split", "bad.unseeded", "two runs differ"),
        ("dataset", "bad.careless", "load() raised FileNotFoundError (ratings.csv); missing or bad data must raise"),
    ],
)
def test_the_data_contracts_catch_broken_components(fusionrec_registry, kind: str, name: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from fusionrec.registry.testing import check_component

    registry = fusionrec_registry(("bad", _BadPlugin()))
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_component(kind, name, registry=registry)
