"""The split protocols: ``temporal``, ``random``, ``leave_last_out`` and ``cold_items``.

All are vectorised (one sort, one group-by) and deterministic: the same data and parameters, seed included, give
the same split. Interactions with equal timestamps are ordered as the data file lists them (``tie_break:
file_order``, the default of ``temporal`` and ``leave_last_out``, as RecBole does: a basket's order is signal), or by
item id (``tie_break: item_id``, the order before issue 17; ``random`` and ``cold_items`` always use it).
Shares are applied exactly: ``⌊share·n⌋`` is computed in
integers (the share taken to nine decimals), so 0.1 × 70 is 7, never 6.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fusionrec.core.data import InteractionData, SplitData

TRAIN, VALID, TEST = 0, 1, 2
SCALE = 10**9


TIE_BREAKS = ("file_order", "item_id")


def _ordered(data: InteractionData, tie_break: str = "item_id") -> pd.DataFrame:
    """The interactions sorted by user and timestamp, equal timestamps by ``tie_break``: ``file_order`` (the row's
    index label, its position in :attr:`InteractionData.interactions`, which keeps the data file's order, so the
    result does not depend on the order the rows are given in) or ``item_id``."""
    frame = data.interactions
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
    last = frame.index.to_numpy() if tie_break == "file_order" else frame["item"].to_numpy()
    order = np.lexsort((last, frame["timestamp"].to_numpy(), frame["user"].to_numpy()))
    return frame.iloc[order]


def _count(share: float, n: np.ndarray) -> np.ndarray:
    """``max(1, ⌊share·n⌋)`` per user (``0`` when the share is 0), in exact integer arithmetic."""
    if share <= 0:
        return np.zeros_like(n)
    counts: np.ndarray = np.maximum(1, (round(share * SCALE) * n) // SCALE)
    return counts


def _label_tail(
    frame: pd.DataFrame, rank: np.ndarray, k_valid: np.ndarray, k_test: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """Train/valid/test label per row: by ``rank`` within its user, the last ``k_test`` to test, the ``k_valid``
    before them to valid, the rest to train; rows of users not ``eligible`` to train. Train keeps at least one."""
    n = _per_user_sizes(frame)
    k_test = np.minimum(k_test, n - 1)
    k_valid = np.minimum(k_valid, n - 1 - k_test)
    from_end = n - 1 - rank
    labels = np.where(from_end < k_test, TEST, np.where(from_end < k_test + k_valid, VALID, TRAIN))
    out: np.ndarray = np.where(eligible, labels, TRAIN)
    return out


def _per_user_sizes(frame: pd.DataFrame) -> np.ndarray:
    sizes: np.ndarray = frame.groupby("user", sort=False)["user"].transform("size").to_numpy()
    return sizes


def _result(frame: pd.DataFrame, labels: np.ndarray, **extra: Any) -> SplitData:
    train, valid, test = (frame[labels == value].sort_index() for value in (TRAIN, VALID, TEST))
    return SplitData(train, valid, test, **extra)


def _user_info(frame: pd.DataFrame, eligible: np.ndarray, minimum: int) -> dict[str, Any]:
    users = frame["user"].to_numpy()
    return {
        "users": len(np.unique(users)),
        "users_evaluated": len(np.unique(users[eligible])),
        "users_train_only": len(np.unique(users[~eligible])),
        "min_interactions": minimum,
    }


class TemporalSplit:
    """Per user, chronological (the default protocol): each user's latest interactions to test and validation.

    Exactly: a user with n ≥ ``min_interactions`` interactions, sorted by timestamp (equal timestamps in file order,
    or by item id with ``tie_break: item_id``), gives the last max(1, ⌊test·n⌋) to test, the max(1, ⌊valid·n⌋)
    before them to validation and the rest to train; a user with fewer stays in train only. A share of 0 holds out
    nothing; train always keeps at least one interaction.
    """

    def __init__(
        self, valid: float = 0.1, test: float = 0.1, min_interactions: int = 5, tie_break: str = "file_order"
    ) -> None:
        self.valid, self.test, self.min_interactions, self.tie_break = valid, test, min_interactions, tie_break

    def split(self, data: InteractionData) -> SplitData:
        frame = _ordered(data, self.tie_break)
        n = _per_user_sizes(frame)
        rank = frame.groupby("user", sort=False).cumcount().to_numpy()
        eligible = n >= self.min_interactions
        labels = _label_tail(frame, rank, _count(self.valid, n), _count(self.test, n), eligible)
        return _result(frame, labels, info=_user_info(frame, eligible, self.min_interactions))


class RandomSplit:
    """Per user, at random (seeded): the same number of interactions held out as ``temporal``, chosen at random.

    A user with n ≥ ``min_interactions`` interactions gives max(1, ⌊test·n⌋) of them, drawn with the seed, to test
    and max(1, ⌊valid·n⌋) to validation, the rest to train; a user with fewer stays in train only.
    """

    def __init__(self, valid: float = 0.1, test: float = 0.1, min_interactions: int = 5, seed: int = 0) -> None:
        self.valid, self.test, self.min_interactions, self.seed = valid, test, min_interactions, seed

    def split(self, data: InteractionData) -> SplitData:
        frame = _ordered(data)
        n = _per_user_sizes(frame)
        keys = np.random.default_rng(self.seed).random(len(frame))
        rank = (
            pd.DataFrame({"user": frame["user"].to_numpy(), "key": keys})
            .groupby("user", sort=False)["key"]
            .rank(method="first")
            .to_numpy()
            .astype(np.int64)
            - 1
        )
        eligible = n >= self.min_interactions
        labels = _label_tail(frame, rank, _count(self.valid, n), _count(self.test, n), eligible)
        info = _user_info(frame, eligible, self.min_interactions) | {"seed": self.seed}
        return _result(frame, labels, info=info)


class LeaveLastOutSplit:
    """Per user: the last interaction (by timestamp, equal timestamps in file order or by item id per
    ``tie_break``) to test, the second last to validation.

    Users with fewer than ``min_interactions`` interactions stay in train only.
    """

    def __init__(self, valid: bool = True, min_interactions: int = 3, tie_break: str = "file_order") -> None:
        self.valid, self.min_interactions, self.tie_break = valid, min_interactions, tie_break

    def split(self, data: InteractionData) -> SplitData:
        frame = _ordered(data, self.tie_break)
        n = _per_user_sizes(frame)
        rank = frame.groupby("user", sort=False).cumcount().to_numpy()
        eligible = n >= self.min_interactions
        ones = np.ones_like(n)
        labels = _label_tail(frame, rank, ones if self.valid else 0 * ones, ones, eligible)
        return _result(frame, labels, info=_user_info(frame, eligible, self.min_interactions))


class ColdItemsSplit:
    """A seeded share of the items, with all their interactions, held out: ranking among those cold items only.

    Of the m items that have interactions, a seeded permutation gives max(1, ⌊test·m⌋) test items and then
    max(1, ⌊valid·m⌋) validation items (none when valid is 0); their interactions go to test and validation, all
    others to train. Test ranks among the test items only (``candidate_items``), validation among the
    validation items (``valid_candidate_items``).
    """

    def __init__(self, test: float = 0.2, valid: float = 0.1, seed: int = 0) -> None:
        self.test, self.valid, self.seed = test, valid, seed

    def split(self, data: InteractionData) -> SplitData:
        frame = _ordered(data)
        items = np.unique(frame["item"].to_numpy())
        m = np.array([len(items)])
        k_test = int(min(_count(self.test, m)[0], max(len(items) - 1, 0)))
        k_valid = int(min(_count(self.valid, m)[0], max(len(items) - 1 - k_test, 0)))
        chosen = np.random.default_rng(self.seed).permutation(items)
        test_items = np.sort(chosen[:k_test]).astype(np.int64)
        valid_items = np.sort(chosen[k_test : k_test + k_valid]).astype(np.int64)
        item = frame["item"].to_numpy()
        labels = np.where(np.isin(item, test_items), TEST, np.where(np.isin(item, valid_items), VALID, TRAIN))
        users = frame["user"].to_numpy()
        trained = np.unique(users[labels == TRAIN])
        tested = np.unique(users[labels == TEST])
        info = {
            "items_with_interactions": len(items),
            "test_items": k_test,
            "valid_items": k_valid,
            "test_users_without_training_data": len(np.setdiff1d(tested, trained)),
            "seed": self.seed,
        }
        return _result(frame, labels, candidate_items=test_items, valid_candidate_items=valid_items, info=info)
