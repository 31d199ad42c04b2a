"""The contracts of datasets and splits, run by :func:`fusionrec.registry.testing.check_component`.

A **split** is run on a small synthetic :class:`InteractionData` (users with 1 to 12 interactions, ties in time):
it must return a :class:`SplitData` whose parts are rows of the input (same index labels, same values), pairwise
disjoint and together the whole input; candidate items must be valid ids that include every held-out item; the
same parameters must give the same split, twice and whatever the order of the input rows; and the input must not
change. A split that reads its own input (the ``files`` split) may raise a :class:`DataError` on synthetic data;
then only the generic checks apply.

A **dataset** must build without reading anything, be a :class:`Dataset` with a :class:`Split`, and ``load()`` must
either raise a :class:`DataError` (the example data is not there: never a bare ``FileNotFoundError``) or return
data meeting :func:`check_interaction_data`.

pandas is imported only when a contract runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fusionrec.core.data import (
    IMAGE,
    INTERACTION_COLUMNS,
    ITEM_ID,
    TEXT,
    DataReport,
    Dataset,
    InteractionData,
    Split,
    SplitData,
)
from fusionrec.core.errors import DataError
from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry


def toy_data(n_users: int = 12, n_items: int = 15) -> InteractionData:
    """Synthetic data: user ``u`` has ``u + 1`` interactions; timestamps repeat, so ties must be broken."""
    import numpy as np
    import pandas as pd

    users = np.repeat(np.arange(n_users), np.arange(1, n_users + 1))
    position = np.concatenate([np.arange(k) for k in range(1, n_users + 1)])
    items = (users * 7 + position * 4) % n_items
    timestamps = 1_000_000 + (position // 2) * 60  # pairs of interactions share a timestamp
    frame = pd.DataFrame(
        {
            "user": users.astype(np.int64),
            "item": items.astype(np.int64),
            "timestamp": timestamps.astype(np.int64),
            "rating": (1 + position % 5).astype(np.float64),
        }
    )
    frame = frame.drop_duplicates(["user", "item", "timestamp"])
    frame = frame.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    item_ids = np.arange(100, 100 + n_items, dtype=np.int64)
    catalogue = pd.DataFrame(
        {
            "item": np.arange(n_items, dtype=np.int64),
            ITEM_ID: item_ids,
            TEXT: [f"item {i}" for i in item_ids],
            IMAGE: [None] * n_items,
        }
    )
    report = DataReport("toy", "(synthetic)")
    return InteractionData(catalogue, frame, np.arange(1, n_users + 1, dtype=np.int64), item_ids, (), report)


def check_interaction_data(data: InteractionData, label: str = "dataset") -> None:
    """Assert the invariants of :class:`InteractionData` (contiguous ids, dtypes, order, a consistent report)."""
    import numpy as np
    import pandas as pd

    assert isinstance(data, InteractionData), f"{label}: load() must return InteractionData, got {type(data)}"
    items, frame = data.items, data.interactions
    assert isinstance(items, pd.DataFrame) and isinstance(frame, pd.DataFrame), f"{label}: tables must be DataFrames"
    assert list(frame.columns) == list(INTERACTION_COLUMNS), f"{label}: interaction columns {list(frame.columns)}"
    for column, kind in (("user", "i"), ("item", "i"), ("timestamp", "i"), ("rating", "f")):
        assert frame[column].dtype.kind == kind and frame[column].dtype.itemsize == 8, (
            f"{label}: interactions.{column} is {frame[column].dtype}, expected {'int64' if kind == 'i' else 'float64'}"
        )
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0, f"{label}: interactions need a RangeIndex"
    assert len(set(data.user_ids.tolist())) == data.n_users, f"{label}: user_ids are not unique"
    assert len(set(data.item_ids.tolist())) == data.n_items, f"{label}: item_ids are not unique"
    assert np.array_equal(items["item"].to_numpy(), np.arange(data.n_items)), f"{label}: items.item is not 0..n-1"
    assert np.array_equal(items[ITEM_ID].to_numpy(), data.item_ids), f"{label}: items.item_id != item_ids"
    for column in (TEXT, IMAGE, *data.text_fields):
        assert column in items.columns, f"{label}: the items table has no column {column!r}"
    assert all(v is None or isinstance(v, str) for v in items[IMAGE].tolist()), f"{label}: image must be str or None"
    if len(frame):
        assert frame["user"].between(0, data.n_users - 1).all(), f"{label}: a user id is out of range"
        assert frame["item"].between(0, data.n_items - 1).all(), f"{label}: an item id is out of range"
        assert frame["user"].nunique() == data.n_users, f"{label}: every user must have an interaction"
        order = frame[["user", "timestamp"]]
        assert order.equals(order.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)), (
            f"{label}: interactions must be sorted by user and timestamp (equal timestamps in the file's order)"
        )
    report = data.report
    assert isinstance(report, DataReport), f"{label}: report must be a DataReport"
    for file, counts in report.files.items():
        dropped = report.dropped(file)
        assert counts.rows_read - counts.rows_kept == dropped, (
            f"{label}: {file}: {counts.rows_read} rows read, {counts.rows_kept} kept, but the report accounts for "
            f"{dropped} dropped: rows went missing without a reason"
        )


def check_split_data(data: InteractionData, result: SplitData, label: str = "split") -> None:
    """Assert that ``result`` partitions ``data.interactions`` and that its candidate sets are sound."""
    import numpy as np

    assert isinstance(result, SplitData), f"{label}: split() must return SplitData, got {type(result)}"
    source = data.interactions
    seen: set[Any] = set()
    for name, part in result.parts().items():
        assert list(part.columns) == list(INTERACTION_COLUMNS), f"{label}: {name} has columns {list(part.columns)}"
        labels = set(part.index.tolist())
        assert len(labels) == len(part), f"{label}: {name} repeats a row"
        assert labels <= set(source.index.tolist()), f"{label}: {name} has rows that are not in the input"
        assert not labels & seen, f"{label}: {name} shares rows with another part"
        seen |= labels
        assert part.equals(source.loc[part.index]), f"{label}: {name} changed the values of its rows"
    assert seen == set(source.index.tolist()), (
        f"{label}: the parts hold {len(seen)} of the {len(source)} input rows; a split must partition its input"
    )
    assert len(source) == 0 or len(result.train), f"{label}: nothing left to train on"
    for name, candidates in (("test", result.candidate_items), ("valid", result.valid_candidate_items)):
        if candidates is None:
            continue
        values = np.asarray(candidates)
        assert values.dtype.kind == "i", f"{label}: {name} candidates must be integer item ids"
        assert len(np.unique(values)) == len(values), f"{label}: {name} candidates repeat an item"
        assert ((values >= 0) & (values < data.n_items)).all(), f"{label}: {name} candidates out of range"
        held_out = result.parts()[name]["item"].to_numpy()
        assert np.isin(held_out, values).all(), f"{label}: a {name} item is not among the {name} candidates"


def _same(a: SplitData, b: SplitData) -> bool:
    import numpy as np

    def arrays_equal(x: Any, y: Any) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))

    return (
        all(
            set(p.index.tolist()) == set(q.index.tolist())
            for p, q in zip(a.parts().values(), b.parts().values(), strict=True)
        )
        and arrays_equal(a.candidate_items, b.candidate_items)
        and arrays_equal(a.valid_candidate_items, b.valid_candidate_items)
    )


def split_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    label = f"split {spec.type!r}"
    split = registry.build(spec, **context)
    assert isinstance(split, Split), f"{label}: the factory must return a fusionrec.core.data.Split (a split() method)"
    data = toy_data()
    before = data.interactions.copy()
    try:
        result = split.split(data)
    except DataError:
        return split  # reads its own input (e.g. files that the example names): nothing more to check here
    assert data.interactions.equals(before), f"{label}: split() changed its input"
    check_split_data(data, result, label)
    assert _same(result, registry.build(spec, **context).split(toy_data())), f"{label}: two runs differ"
    shuffled = toy_data()
    shuffled.interactions = shuffled.interactions.sample(frac=1.0, random_state=7)
    assert _same(result, split.split(shuffled)), f"{label}: the split depends on the order of the input rows"
    return split


def dataset_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    label = f"dataset {spec.type!r}"
    dataset = registry.build(spec, **context)
    assert isinstance(dataset, Dataset), f"{label}: the factory must return a Dataset (load() and a split)"
    assert isinstance(dataset.split, Split), f"{label}: its split must be a fusionrec.core.data.Split"
    try:
        data = dataset.load()
    except DataError:
        return dataset  # the example's data is not there; loading real data is the dataset's own tests' job
    except Exception as exc:
        raise AssertionError(
            f"{label}: load() raised {type(exc).__name__} ({exc}); missing or bad data must raise DataError"
        ) from exc
    check_interaction_data(data, label)
    return dataset
