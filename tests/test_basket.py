"""``basket: true``: a user's interactions with one timestamp are one step of the history, in reading and training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from fusionrec.core.assembly.config import TrainConfig
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.trainer import Trainer
from fusionrec.core.engine.two_tower import Histories, ItemTower, TwoTower, TwoTowerScorer, encode_users
from fusionrec.core.errors import ConfigError
from fusionrec.core.user_tower import UserTower
from fusionrec.plugins.fusers.concat_impl import ConcatFuser
from fusionrec.plugins.user_towers.pooling_impl import MeanTower
from fusionrec.plugins.user_towers.sasrec_impl import TransformerTower

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "data" / "quickstart"

# user 0: baskets [10, 11, 12] @1, [13] @2, [14, 15] @3; user 1: [20] @5, [21, 22] @6; user 2: nothing; user 3:
# [31, 30] @1. Items are unique, so an item names its interaction. Rows are shuffled across users, and the index
# labels (the file order) say that within a timestamp 12 comes before 10 and 11, 22 before 21 and 31 before 30.
ROWS = [(1, 21, 6, 7), (0, 14, 3, 5), (0, 12, 1, 0), (3, 31, 1, 9), (0, 10, 1, 1), (1, 20, 5, 6), (0, 13, 2, 4),
        (0, 11, 1, 2), (1, 22, 6, 3), (0, 15, 3, 8), (3, 30, 1, 10)]  # fmt: skip
BASKETS = [[12, 10, 11], [13], [14, 15], [20], [22, 21], [31, 30]]
"""The baskets in order (user 0, 1, 3), items in file order."""
BASKET_USERS = [0, 0, 0, 1, 1, 3]


def histories() -> Histories:
    frame = pd.DataFrame(ROWS, columns=["user", "item", "timestamp", "row"]).set_index("row")
    return Histories.from_frame(frame, n_users=4)


def basket_of(item: int) -> int:
    return next(b for b, items in enumerate(BASKETS) if item in items)


def rows(window: torch.Tensor) -> list[list[list[int]]]:
    """A ``(B, L, width)`` window as nested lists without the -1 padding (an empty list: a padding step)."""
    return [[[i for i in step if i >= 0] for step in row] for row in window.tolist()]


def test_equal_timestamps_of_one_user_form_one_basket_in_file_order() -> None:
    h = histories()
    baskets = h.baskets
    assert h.items.tolist() == [i for b in BASKETS for i in b]  # by user and time, file order within a timestamp
    assert baskets.count == 6 and baskets.sizes.tolist() == [3, 1, 2, 1, 2, 2]
    assert baskets.offsets.tolist() == [0, 3, 5, 5, 6]  # user 2 has no basket
    assert baskets.user_of().tolist() == [0, 0, 0, 1, 1, 3]
    assert baskets.of_position(torch.arange(11)).tolist() == [0, 0, 0, 1, 2, 2, 3, 4, 4, 5, 5]
    last = baskets.last(torch.tensor([0, 1, 2, 3]), 2)
    assert last.shape == (4, 2, 2)  # as wide as the widest basket of the batch
    assert rows(last) == [[[13], [14, 15]], [[20], [22, 21]], [[], []], [[], [31, 30]]]
    assert rows(baskets.last(torch.tensor([0]), 4)) == [[[], [12, 10, 11], [13], [14, 15]]]
    # at most two items of a basket: its last ones in file order
    assert rows(baskets.last(torch.tensor([0, 1]), 3, 2)) == [[[10, 11], [13], [14, 15]], [[], [20], [22, 21]]]
    assert rows(baskets.window(torch.tensor([0, 1]), torch.tensor([2, 4]), 3)) == [
        [[], [12, 10, 11], [13]],
        [[], [], [20]],
    ]
    # histories without timestamps (a session sent to the server): one item per basket
    plain = Histories(h.items, h.offsets)
    assert plain.baskets.sizes.tolist() == [1] * 11
    assert rows(plain.baskets.last(torch.tensor([1]), 2)) == [[[22], [21]]]


def test_a_basket_step_is_the_mean_of_its_item_vectors() -> None:
    vectors = torch.randn(40, 4)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def tower(history: torch.Tensor, mask: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        seen.append((history, mask))
        return history[:, -1]

    vectors.requires_grad_(True)
    out = encode_users(tower, vectors, histories().baskets.last(torch.tensor([0, 2]), 3), None, normalize=False)
    out.sum().backward()  # type: ignore[no-untyped-call]
    assert vectors.grad is not None and vectors.grad[10:16].abs().sum() > 0 and not vectors.grad[16:].any()
    history, mask = seen[0]
    assert mask.tolist() == [[True, True, True], [False, False, False]]
    torch.testing.assert_close(history[0, 0], vectors[[12, 10, 11]].mean(0))
    torch.testing.assert_close(history[0, 1], vectors[13])
    torch.testing.assert_close(history[0, 2], vectors[[14, 15]].mean(0))
    assert not history[1].any()


def trainer(tower: UserTower) -> Trainer:
    features = {"x": (torch.randn(40, 3).numpy(), torch.ones(40, dtype=torch.bool).numpy())}
    model = TwoTower(ItemTower(features, ConcatFuser({"x": 3}, dim=8), 40, 8, True), tower, normalize=True)
    config = TrainConfig(batch_size=64, device="cpu", seed=0)
    return Trainer(model, histories(), config, RunDir(Path("unused"), {}), None)


@pytest.mark.parametrize("max_history", [1, 2, 5])
def test_sequential_training_never_predicts_an_item_from_its_own_basket(max_history: int) -> None:
    train = trainer(TransformerTower(8, max_history=max_history, layers=1, heads=2, basket=True))
    ends = train.examples()
    history, targets, users, keep, groups = train.examples_at(ends)
    assert keep is not None and groups is not None and history.dim() == 3 and targets.shape == keep.shape
    assert users.tolist() == [BASKET_USERS[end - 1] for end in ends.tolist()]
    predicted: list[int] = []
    for b, t, k in keep.nonzero().tolist():
        target = int(targets[b, t, k])
        before = [i for i in history[b, : t + 1].flatten().tolist() if i >= 0]
        # the history of a target ends exactly at the basket before its own
        assert before and max(basket_of(i) for i in before) == basket_of(target) - 1
        # all of it, up to max_history items (a basket's last ones)
        assert [i for i in history[b, t].tolist() if i >= 0] == BASKETS[basket_of(target) - 1][-max_history:]
        predicted.append(target)
    # every item but those of a user's first basket is a target, once
    assert sorted(predicted) == sorted(i for b in (1, 2, 4) for i in BASKETS[b])
    # the items of one basket are read from one user vector: one group, and a group per step
    by_group: dict[int, set[int]] = {}
    for group, target in zip(groups.tolist(), targets[keep].tolist(), strict=True):
        by_group.setdefault(group, set()).add(basket_of(target))
    assert all(len(b) == 1 for b in by_group.values()) and len(by_group) == 3
    loss = train.loss(ends, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()  # type: ignore[no-untyped-call]


def test_per_interaction_training_reads_the_baskets_before_the_target() -> None:
    train = trainer(MeanTower(8, max_history=2, basket=True))
    positions = train.examples()
    history, targets, _, keep, groups = train.examples_at(positions)
    assert keep is None and groups is not None and history.shape[:2] == (11, 2)
    for row, target in enumerate(targets.tolist()):
        own = basket_of(target)
        # the user's (at most two) baskets before the target's own (at most two items each), never its basket-mates
        expected = [BASKETS[b][-2:] for b in (own - 2, own - 1) if b >= 0 and BASKET_USERS[b] == BASKET_USERS[own]]
        assert [s for s in rows(history[row : row + 1])[0] if s] == expected
        assert groups[row] == own
    assert torch.isfinite(train.loss(positions, torch.Generator().manual_seed(0)))


def test_default_reads_items_and_the_scorer_follows_the_tower() -> None:
    h = histories()
    vectors = torch.randn(40, 8)
    users = torch.tensor([0, 1, 3]).numpy()
    plain = TwoTowerScorer(MeanTower(8, n_users=4, max_history=2), vectors, False, 4).user_vectors(users, h)
    torch.testing.assert_close(plain[0], vectors[[14, 15]].mean(0))  # the last two items
    basket = TwoTowerScorer(MeanTower(8, n_users=4, max_history=2, basket=True), vectors, False, 4)
    out = basket.user_vectors(users, h)
    torch.testing.assert_close(out[0], (vectors[13] + vectors[[14, 15]].mean(0)) / 2)  # the last two baskets
    torch.testing.assert_close(out[2], vectors[[30, 31]].mean(0))
    # a session without timestamps: one item per step
    session = basket.user_vectors(users[:1], Histories(h.items, h.offsets), users_known=False)
    torch.testing.assert_close(session[0], vectors[[14, 15]].mean(0))


def pipeline(basket: object) -> dict[str, object]:
    return {
        "fusionrec": 1,
        "data": {"type": "movielens", "path": str(QUICKSTART), "split": {"type": "temporal"}},
        "user": {"type": "transformer", "max_history": 20, "layers": 1, "basket": basket},
        "train": {"epochs": 1, "batch_size": 512, "lr": 3.0e-3, "item_ids": True, "seed": 0},
        "evaluate": {"metrics": ["recall@20", "ndcg@20"], "bootstrap": 0},
    }


def test_a_basket_pipeline_runs_end_to_end_on_the_quickstart_data(tmp_path: Path) -> None:
    from fusionrec.core.api import Pipeline

    run = Pipeline.load(pipeline(True)).train(tmp_path / "run", fresh=True)
    for part in ("valid", "test"):
        assert 0.0 < run.metrics[part]["metrics"]["recall@20"] <= 1.0
        assert 0.0 < run.metrics[part]["metrics"]["ndcg@20"] <= 1.0
    # the served path: a known user's history is read in baskets; a history sent now, one item per step
    assert [len(r) for r in run.recommend([1, 2], k=5)] == [5, 5]
    assert len(run.recommend_history([1, 6, 47], k=5)) == 5


def test_a_bad_basket_value_is_a_config_error() -> None:
    from fusionrec.core.api import Pipeline

    with pytest.raises(ConfigError, match=r"user\.basket: Input should be a valid boolean.*'sometimes'"):
        Pipeline.load(pipeline("sometimes")).validate()
