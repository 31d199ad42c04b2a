"""The built-in user towers compute what their docs say, and the user-tower contract catches broken towers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from fusionrec.core.errors import ConfigError
from fusionrec.core.params import Params
from fusionrec.core.user_tower import UserTower
from fusionrec.registry import get_registry, hookimpl
from fusionrec.registry.testing import check_component
from fusionrec.registry.user_tower_contracts import left_pad

DIM, USERS = 8, 5
TOWERS = ("mean", "attention_pool", "gru", "transformer", "id")


def build(name: str, **params: Any) -> Any:
    torch.manual_seed(0)
    return get_registry().create("user_tower", name, {"item_dim": DIM, "n_users": USERS}, **params).eval()


def histories(lengths: tuple[int, ...] = (5, 3, 0, 1), width: int = 5, fill: float = float("nan")) -> Any:
    """Seeded left-padded histories; padding holds NaN (it may hold anything)."""
    gen = torch.Generator().manual_seed(3)
    items = [torch.randn(n, DIM, generator=gen) for n in lengths]
    history, mask = left_pad(items, width, DIM, fill=fill)
    return items, history, mask, torch.arange(len(lengths)) % USERS


def test_the_five_towers_are_registered() -> None:
    assert set(TOWERS) <= set(get_registry().table("user_tower"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mean", {"user_ids": True}),
        ("mean", {"project": True, "max_history": 3}),
        ("attention_pool", {"user_ids": True, "recency": False, "dropout": 0.2}),
        ("gru", {"user_ids": True, "hidden": 12, "layers": 2, "dropout": 0.1}),
        ("transformer", {"user_ids": True, "layers": 1, "heads": 4, "max_history": 4}),
        ("transformer", {"dropout": 0.0, "ffn_factor": 1, "max_history": 10}),
        ("id", {"init_std": 0.5}),
    ],
    ids=lambda value: value if isinstance(value, str) else ",".join(f"{k}={v}" for k, v in value.items()),
)
def test_variants_meet_the_contract(name: str, params: dict[str, Any]) -> None:
    check_component("user_tower", name, params=params)


@pytest.mark.parametrize("name", TOWERS)
def test_empty_history_gives_zeros_plus_the_user_embedding(name: str) -> None:
    params = {} if name == "id" else {"user_ids": True}
    tower = build(name, **params)
    if tower.user_embedding is not None:
        nn.init.normal_(tower.user_embedding.weight)
    _, history, mask, users = histories()
    out = tower(history, mask, users)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[2], tower.user_embedding.weight[users[2]])
    zero_length = tower(history[:, :0], mask[:, :0], users)  # a batch in which nobody has a history
    torch.testing.assert_close(zero_length, tower.user_embedding.weight[users])
    plain = build(name) if name != "id" else None
    if plain is not None:
        assert torch.all(plain(history, mask, users)[2] == 0)


@pytest.mark.parametrize("name", TOWERS)
def test_only_sasrec_is_sequential(name: str) -> None:
    assert build(name).sequential is (name == "transformer")
    assert build(name).max_history == (0 if name == "id" else 50)


def test_mean_is_the_masked_mean_of_the_most_recent_items() -> None:
    items, history, mask, users = histories()
    out = build("mean")(history, mask, users)
    for row, real in enumerate(items):
        expected = real.mean(dim=0) if len(real) else torch.zeros(DIM)
        torch.testing.assert_close(out[row], expected)
    short = build("mean", max_history=2)(history, mask, users)
    torch.testing.assert_close(short[0], items[0][-2:].mean(dim=0))
    torch.testing.assert_close(short[3], items[3][0])


def test_mean_projection_starts_as_the_identity_and_is_linear() -> None:
    items, history, mask, users = histories()
    tower = build("mean", project=True)
    torch.testing.assert_close(tower(history, mask, users), build("mean")(history, mask, users))
    assert tower.project is not None
    nn.init.normal_(tower.project.weight)
    with torch.no_grad():
        out = tower(history, mask, users)
    torch.testing.assert_close(out[0], tower.project(items[0].mean(dim=0)).detach())
    assert torch.all(out[2] == 0)  # the bias does not leak into empty histories


def test_user_ids_add_a_learned_embedding() -> None:
    _, history, mask, users = histories()
    plain, with_ids = build("gru"), build("gru", user_ids=True)
    assert with_ids.user_embedding is not None
    torch.testing.assert_close(with_ids(history, mask, users), plain(history, mask, users))  # starts at zero
    nn.init.normal_(with_ids.user_embedding.weight)
    with torch.no_grad():
        expected = plain(history, mask, users) + with_ids.user_embedding(users)
        expected[2] = with_ids.user_embedding.weight[users[2]]
        torch.testing.assert_close(with_ids(history, mask, users), expected)
    with pytest.raises(ValueError, match="needs the user ids"):
        with_ids(history, mask)
    with pytest.raises(ValueError, match=r"user ids must lie in 0\.\.4"):
        with_ids(history, mask, torch.tensor([0, 1, 2, USERS]))


def test_user_ids_without_users_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="n_users > 0"):
        get_registry().create("user_tower", "mean", {"item_dim": DIM, "n_users": 0}, user_ids=True)
    with pytest.raises(ConfigError, match="n_users > 0"):
        get_registry().create("user_tower", "id", {"item_dim": DIM, "n_users": 0})


def test_attention_weights_sum_to_one_over_the_real_items() -> None:
    items, history, mask, users = histories()
    tower = build("attention_pool")
    nn.init.normal_(tower.recency)  # a trained-looking recency bias
    with torch.no_grad():
        weights = tower.attention(history, mask, users)
        out = tower(history, mask, users)
    assert weights.shape == mask.shape and (weights >= 0).all()
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    for row, real in enumerate(items):
        if len(real):
            torch.testing.assert_close(out[row], weights[row, mask[row]] @ real)
    # by hand: scaled dot product of the learned query with the keys, plus the recency bias
    real = items[0]
    scores = tower.key(real) @ tower.query / DIM**0.5 + tower.recency[torch.arange(len(real) - 1, -1, -1)]
    torch.testing.assert_close(weights[0], torch.softmax(scores, dim=0).detach())


def test_attention_query_includes_the_user_embedding() -> None:
    _, history, mask, _ = histories()
    tower = build("attention_pool", user_ids=True, recency=False)
    assert tower.user_embedding is not None
    nn.init.normal_(tower.user_embedding.weight, std=3.0)
    same = history[:1].expand(2, -1, -1)
    with torch.no_grad():
        weights = tower.attention(same, mask[:1].expand(2, -1), torch.tensor([0, 1]))
    assert not torch.allclose(weights[0], weights[1])  # same history, other user: other weights


def gru_reference(tower: Any, real: torch.Tensor) -> torch.Tensor:
    """The GRU run over the real items alone, no padding at all."""
    _, last = tower.gru(real.unsqueeze(0))
    out: torch.Tensor = tower.project(last[-1])[0]
    return out


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_ignores_left_padding(layers: int) -> None:
    tower = build("gru", layers=layers, hidden=6)
    items, history, mask, users = histories()
    with torch.no_grad():
        out = tower(history, mask, users)
        for width, fill in ((5, 0.0), (9, 0.0), (12, 7.0)):
            _, wide, wide_mask, _ = histories(width=width, fill=fill)
            torch.testing.assert_close(tower(wide, wide_mask, users), out)
        for row, real in enumerate(items):
            if len(real):
                torch.testing.assert_close(out[row], gru_reference(tower, real))


def test_gru_reads_the_order_of_the_history() -> None:
    tower = build("gru")
    _, history, mask, users = histories()
    reversed_history = history.clone()
    reversed_history[0] = history[0].flip(0)
    with torch.no_grad():
        out, out_reversed = tower(history, mask, users), tower(reversed_history, mask, users)
    assert not torch.allclose(out[0], out_reversed[0])
    torch.testing.assert_close(out[1:], out_reversed[1:])


def test_transformer_is_causal_and_ends_with_the_user_vector() -> None:
    tower = build("transformer", max_history=6)
    _, history, mask, users = histories(width=6)
    with torch.no_grad():
        states = tower.encode_sequence(history, mask, users)
        out = tower(history, mask, users)
    assert states.shape == (4, 6, DIM)
    torch.testing.assert_close(states[[0, 1, 3], -1], out[[0, 1, 3]])
    assert torch.all(states[~mask] == 0)
    for t in range(5):
        changed = history.clone()
        changed[:, t + 1 :] = torch.randn(4, 5 - t, DIM)
        with torch.no_grad():
            after = tower.encode_sequence(changed, mask, users)
        torch.testing.assert_close(after[mask[:, t], t], states[mask[:, t], t])
        if mask[0, t + 1 :].any():
            assert not torch.allclose(after[0, -1], states[0, -1])  # later positions do see the change


def test_transformer_positions_count_from_the_newest_item() -> None:
    tower = build("transformer", max_history=8)
    _, history, mask, users = histories(width=5, fill=0.0)
    with torch.no_grad():
        out = tower(history, mask, users)
        _, wide, wide_mask, _ = histories(width=8, fill=-4.0)
        torch.testing.assert_close(tower(wide, wide_mask, users), out)
        # a history longer than max_history: only the newest max_history items count
        long_items = torch.randn(12, DIM)
        long_history, long_mask = left_pad([long_items], 12, DIM)
        short_history, short_mask = left_pad([long_items[-8:]], 8, DIM)
        torch.testing.assert_close(
            tower(long_history, long_mask, users[:1]), tower(short_history, short_mask, users[:1])
        )
        # the order matters (positional embeddings)
        swapped = history.clone()
        swapped[0, [0, 1]] = history[0, [1, 0]]
        assert not torch.allclose(tower(swapped, mask, users)[0], out[0])
    with pytest.raises(ValueError, match="at most max_history=8"):
        tower.encode_sequence(long_history, long_mask, users[:1])


def test_transformer_heads_must_divide_item_dim() -> None:
    with pytest.raises(ConfigError, match=r"item_dim \(8\) must be divisible by heads \(3\)"):
        build("transformer", heads=3)


def test_id_tower_reads_no_history() -> None:
    tower = build("id")
    _, history, mask, _ = histories()
    users = torch.tensor([0, 0, 3, 4])
    with torch.no_grad():
        out = tower(history, mask, users)
        noise = tower(torch.randn_like(history), torch.ones_like(mask), users)
    torch.testing.assert_close(out, noise)
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[2], out[3])
    torch.testing.assert_close(out, tower.user_embedding.weight[users])
    with pytest.raises(ValueError, match="needs the user ids"):
        tower(history, mask)


@pytest.mark.parametrize("name", TOWERS)
def test_seeded_training_step_is_deterministic(name: str) -> None:
    _, history, mask, users = histories(fill=0.0)

    def step() -> torch.Tensor:
        tower = build(name, **({"project": True} if name == "mean" else {})).train()
        torch.manual_seed(1)
        optimiser = torch.optim.SGD(tower.parameters(), lr=0.1)
        tower(history, mask, users).pow(2).sum().backward()
        optimiser.step()
        out: torch.Tensor = tower.eval()(history, mask, users).detach()
        return out

    assert torch.equal(step(), step())


# deliberately broken towers: the contract must catch each


class UnpackedGru(UserTower):
    """A GRU over the left-padded window, padding steps included."""

    def __init__(self, item_dim: int, n_users: int) -> None:
        super().__init__()
        self.item_dim = self.out_dim = item_dim
        self.max_history = 50
        self.gru = nn.GRU(item_dim, item_dim, batch_first=True)

    def encode_history(self, history: torch.Tensor, mask: torch.Tensor, users: Any = None) -> torch.Tensor:
        zeroed = history * mask.unsqueeze(-1).to(history.dtype)
        zeroed = torch.nan_to_num(zeroed)
        _, last = self.gru(zeroed)
        out: torch.Tensor = last[-1]
        return out


class PeekingSequence(UserTower):
    """Claims to be sequential, but every position sees the whole history."""

    sequential = True

    def __init__(self, item_dim: int, n_users: int) -> None:
        super().__init__()
        self.item_dim = self.out_dim = item_dim
        self.max_history = 50
        self.scale = nn.Parameter(torch.ones(1))

    def encode_history(self, history: torch.Tensor, mask: torch.Tensor, users: Any = None) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(history.dtype)
        zeroed = torch.where(mask.unsqueeze(-1), history, torch.zeros(()))
        out: torch.Tensor = self.scale * zeroed.sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return out

    def encode_sequence(self, history: torch.Tensor, mask: torch.Tensor, users: Any = None) -> torch.Tensor:
        return self.encode_history(history, mask, users).unsqueeze(1).expand(-1, history.shape[1], -1)


class NoParams(Params):
    """No parameters."""


class BrokenTowers:
    @hookimpl
    def register_user_towers(self, register):  # type: ignore[no-untyped-def]
        register("broken.unpacked_gru", UnpackedGru, params=NoParams)
        register("broken.peeking", PeekingSequence, params=NoParams)


@pytest.mark.parametrize(
    ("name", "message"),
    [("broken.unpacked_gru", "padding must not count"), ("broken.peeking", "encode_sequence is not causal")],
)
def test_contract_catches_broken_towers(fusionrec_registry, name: str, message: str) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_registry(("broken", BrokenTowers()))
    with pytest.raises(AssertionError, match=message):
        check_component("user_tower", name, registry=registry)
