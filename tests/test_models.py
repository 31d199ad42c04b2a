"""The baseline models: what each computes, by hand where it can be, and on planted data where it cannot.

The model contract (tests/test_contracts.py runs it for every registered model) checks shapes, determinism,
save/load and beating random; these tests check the models' own promises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.registry import get_registry, hookimpl
from fusionrec.registry.model_contracts import RecallAtK, fit_context, planted_data, random_recall
from fusionrec.registry.testing import check_component

MODELS = ["popularity", "itemknn", "bpr_mf", "lightgcn", "vbpr"]
PERSONALISED = ["itemknn", "bpr_mf", "lightgcn", "vbpr"]


def frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    rows = pd.DataFrame(pairs, columns=["user", "item"])
    rows["timestamp"] = np.arange(len(rows))
    rows["rating"] = 1.0
    return rows


def no_validation(score: Any) -> dict[str, float]:
    return {"recall@20": 0.0}


def context(train: pd.DataFrame, n_users: int, n_items: int, **extra: Any) -> FitContext:
    return FitContext(train=train, n_users=n_users, n_items=n_items, features={}, validate=no_validation, **extra)


def build(name: str, **params: Any) -> Model:
    model = get_registry().create("model", name, **params)
    assert isinstance(model, Model)
    return model


def validation(data: dict[str, Any]) -> Any:
    users = np.sort(data["valid"]["user"].unique())
    recall = RecallAtK(users, data["train"], data["valid"], data["n_items"])

    def validate(score: Any) -> dict[str, float]:
        return {"recall@20": recall(score(users))}

    return validate


def valid_recall(model: Model, data: dict[str, Any]) -> float:
    users = np.sort(data["valid"]["user"].unique())
    return RecallAtK(users, data["train"], data["valid"], data["n_items"])(model.score(users, data["train"]))


def test_the_five_baselines_are_registered() -> None:
    assert set(MODELS) <= set(get_registry().table("model"))


@pytest.mark.parametrize("name", ["bpr_mf", "lightgcn", "vbpr"])
def test_constructor_defaults_equal_the_parameter_defaults(name: str) -> None:
    defaults = get_registry().table("model")[name].params().model_dump()
    built = build(name)
    assert built.params == defaults  # type: ignore[attr-defined]
    assert type(built)().params == defaults  # type: ignore[attr-defined]


def test_popularity_counts_the_history_given_to_score() -> None:
    train = frame([(0, 1), (1, 1), (2, 1), (0, 2), (1, 0)])
    model = build("popularity")
    model.fit(context(train, n_users=4, n_items=4))
    users = np.array([3, 0], dtype=np.int64)  # user 3 has no interaction: same scores as everyone
    assert model.score(users, train).tolist() == [[1.0, 3.0, 1.0, 0.0]] * 2
    later = pd.concat([train, frame([(2, 3), (3, 3), (0, 3), (1, 3)])], ignore_index=True)
    assert model.score(users, later).tolist() == [[1.0, 3.0, 1.0, 4.0]] * 2  # the test history counts, no refit


# users a..d = 0..3; item user sets U0 = {0, 1}, U1 = {0, 1, 2}, U2 = {2, 3}, U3 = {3}
KNN_TRAIN = frame([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)])


def cosine(common: int, size_i: int, size_j: int, shrink: float = 0.0) -> float:
    return float(common / (np.sqrt(size_i * size_j) + shrink))


@pytest.mark.parametrize("shrink", [0.0, 1.0])
def test_itemknn_scores_equal_a_hand_computed_example(shrink: float) -> None:
    model = build("itemknn", neighbours=2, shrink=shrink)
    model.fit(context(KNN_TRAIN, n_users=6, n_items=4))
    s01, s12, s23 = cosine(2, 2, 3, shrink), cosine(1, 3, 2, shrink), cosine(1, 2, 1, shrink)
    # kept neighbours (2 per item, positive only): 0 → {1}; 1 → {0, 2}; 2 → {3, 1}; 3 → {2}
    expected_rows = np.array([[0, s01, 0, 0], [s01, 0, s12, 0], [0, s12, 0, s23], [0, 0, s23, 0]])
    # user 5 never appears in training: its history at prediction time is items {0, 2}
    history = pd.concat([KNN_TRAIN, frame([(5, 0), (5, 2), (5, 2)])], ignore_index=True)
    scores = model.score(np.array([5, 0, 3], dtype=np.int64), history)
    expected = np.stack([expected_rows[[0, 2]].sum(0), expected_rows[[0, 1]].sum(0), expected_rows[[2, 3]].sum(0)])
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-6)


def test_itemknn_keeps_only_the_top_neighbours_and_falls_back_to_popularity() -> None:
    model = build("itemknn", neighbours=1)
    model.fit(context(KNN_TRAIN, n_users=6, n_items=4))
    scores = model.score(np.array([5, 4], dtype=np.int64), pd.concat([KNN_TRAIN, frame([(5, 1)])]))
    np.testing.assert_allclose(scores[0].numpy(), [cosine(2, 2, 3), 0, 0, 0], rtol=1e-6)  # item 1's best: item 0
    assert scores[1].tolist() == [2.0, 4.0, 2.0, 1.0]  # user 4 has no history: item counts


@pytest.mark.parametrize("name", MODELS)
def test_each_model_beats_random_and_personalised_ones_beat_popularity(name: str) -> None:
    data = planted_data(seed=3)
    model = build(name)
    summary = model.fit(fit_context(data, validation(data), seed=5))
    recall = valid_recall(model, data)
    assert recall >= random_recall(data) + 0.1, (name, recall, summary)
    if name in PERSONALISED:
        popular = build("popularity")
        popular.fit(fit_context(data, validation(data)))
        assert recall >= valid_recall(popular, data) + 0.3, (name, recall, summary)


def cold_item_data() -> tuple[dict[str, Any], np.ndarray]:
    """Planted data where items 100..119 (five per cluster) have no interaction at all."""
    data = planted_data(seed=1)
    cold = np.arange(100, 120)
    for part in ("train", "valid"):
        data[part] = data[part][~data[part]["item"].isin(cold)].reset_index(drop=True)
    vectors, present = data["features"]["image"]
    present = present.copy()
    present[cold] = True  # every cold item has features
    vectors = np.where(present[:, None], vectors, np.nan).astype(np.float32)
    vectors[cold] = np.concatenate([np.eye(4)[cold % 4], np.zeros((20, 4))], axis=1) + 0.05
    data["features"] = {"image": (vectors, present)}
    return data, cold


def cold_item_auc(model: Model, data: dict[str, Any], cold: np.ndarray) -> float:
    """How often a user's cold items of its own cluster score above cold items of other clusters."""
    users = np.arange(80, dtype=np.int64)
    scores = model.score(users, data["train"]).numpy()[:, cold]
    same = (cold[None, :] % 4) == (users[:, None] % 4)
    wins = [(row[mine][:, None] > row[~mine][None, :]).mean() for row, mine in zip(scores, same, strict=True)]
    return float(np.mean(wins))


def test_vbpr_ranks_items_without_interactions_by_their_features() -> None:
    data, cold = cold_item_data()
    vbpr, mf = build("vbpr"), build("bpr_mf")
    vbpr.fit(fit_context(data, validation(data)))
    mf.fit(fit_context(data, validation(data)))
    assert cold_item_auc(vbpr, data, cold) >= 0.9
    assert cold_item_auc(mf, data, cold) <= 0.75  # without features, cold items are ranked by chance


def test_vbpr_reads_the_modality_it_is_given() -> None:
    data, cold = cold_item_data()
    vectors, present = data["features"]["image"]
    data["features"] = {"text": (vectors, present), "image": (np.zeros_like(vectors), present)}
    model = build("vbpr", modality="text")
    model.fit(fit_context(data, validation(data)))
    assert cold_item_auc(model, data, cold) >= 0.9


def test_vbpr_without_its_modality_is_a_config_error() -> None:
    data = planted_data()
    data["features"] = {"text": data["features"]["image"]}
    with pytest.raises(ConfigError) as error:
        build("vbpr").fit(fit_context(data, no_validation))
    message = str(error.value)
    assert "model.modality" in message and "'image'" in message and "text" in message and "encoders" in message
    data["features"] = {}
    with pytest.raises(ConfigError, match="none"):
        build("vbpr").fit(fit_context(data, no_validation))


def test_vbpr_rejects_features_that_do_not_match_the_items() -> None:
    data = planted_data()
    vectors, present = data["features"]["image"]
    data["features"] = {"image": (vectors[:-1], present[:-1])}
    with pytest.raises(FusionrecError, match=r"expected \(120, dim\)"):
        build("vbpr").fit(fit_context(data, no_validation))


def test_bpr_training_logs_every_epoch_validates_every_eval_every_and_stops_early() -> None:
    data = planted_data()
    records: list[dict[str, Any]] = []
    calls: list[int] = []

    def flat(score: Any) -> dict[str, float]:  # never improves after the first validation
        calls.append(len(score(np.array([0, 1], dtype=np.int64))))
        return {"recall@20": 0.5, "ndcg@20": 0.25}

    model = build("bpr_mf", eval_every=2, patience=3, epochs=50)
    summary = model.fit(fit_context(data, flat, log=records.append))
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert [r["epoch"] for r in records if "valid" in r] == [2, 4, 6, 8]
    assert records[1]["valid"] == {"recall@20": 0.5, "ndcg@20": 0.25} and calls == [2] * 4
    assert all(np.isfinite(r["loss"]) and r["seconds"] >= 0 for r in records)
    assert summary["epochs"] == 8 and summary["best_epoch"] == 2 and summary["stopped_early"] is True
    json.dumps(summary)


def test_the_best_validated_state_is_kept() -> None:
    data = planted_data()
    scores: list[torch.Tensor] = []
    users = np.arange(4, dtype=np.int64)

    def peak_at_three(score: Any) -> dict[str, float]:
        scores.append(score(users))
        return {"recall@20": [0.1, 0.2, 0.9, 0.3, 0.2][len(scores) - 1]}

    model = build("lightgcn", epochs=5, patience=5)
    summary = model.fit(fit_context(data, peak_at_three))
    assert summary["best_epoch"] == 3 and summary["epochs"] == 5
    torch.testing.assert_close(model.score(users, data["train"]), scores[2])


def test_validation_without_recall_at_20_is_an_error() -> None:
    with pytest.raises(FusionrecError, match=r"recall@20.*ndcg@10"):
        build("bpr_mf").fit(fit_context(planted_data(), lambda score: {"ndcg@10": 0.1}))


def test_users_without_training_interactions_get_the_popularity_of_the_history() -> None:
    train = frame([(0, 1), (1, 1), (0, 2), (1, 0), (2, 3)])
    model = build("bpr_mf", epochs=2)
    model.fit(context(train, n_users=4, n_items=5))
    history = pd.concat([train, frame([(3, 4), (3, 4)])], ignore_index=True)
    scores = model.score(np.array([3, 7, 0], dtype=np.int64), history)  # 3: no training; 7: beyond n_users
    assert scores[:2].tolist() == [[1.0, 2.0, 1.0, 1.0, 2.0]] * 2
    assert torch.isfinite(scores[2]).all() and scores[2].tolist() != scores[0].tolist()


def test_fitting_is_seeded() -> None:
    data = planted_data()
    users = np.arange(10, dtype=np.int64)

    def scores(seed: int) -> torch.Tensor:
        model = build("lightgcn", epochs=3)
        model.fit(fit_context(data, no_validation, seed=seed))
        return model.score(users, data["train"])

    # torch's multi-threaded sparse products may sum in a different order from run to run (seen: 5e-10 apart)
    torch.testing.assert_close(scores(0), scores(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(scores(0), scores(1))


def test_lightgcn_graph_is_the_symmetrically_normalised_adjacency() -> None:
    from fusionrec.plugins.models.lightgcn_impl import SymmetricProduct, normalised_graph

    users, items = np.array([0, 0, 1]), np.array([0, 1, 1])
    graph = normalised_graph(users, items, n_users=2, n_items=3)
    adjacency = torch.zeros(5, 5)
    adjacency[torch.tensor([0, 0, 1]), torch.tensor([2, 3, 3])] = 1.0
    adjacency = adjacency + adjacency.T
    degree = adjacency.sum(1)
    root = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    expected = root[:, None] * adjacency * root[None, :]  # item 2 (node 4) has no edge: a zero row
    torch.testing.assert_close(graph.to_dense(), expected)

    x = torch.randn(5, 3, requires_grad=True)
    SymmetricProduct.apply(graph, x).pow(2).sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    (expected @ reference).pow(2).sum().backward()
    assert x.grad is not None and reference.grad is not None
    torch.testing.assert_close(x.grad, reference.grad)


@pytest.mark.parametrize("name", MODELS)
def test_saved_files_are_json_and_tensors_and_load_checks_the_model(name: str, tmp_path: Path) -> None:
    data = planted_data()
    model = build(name, **({} if name in ("popularity", "itemknn") else {"epochs": 2}))
    model.fit(fit_context(data, validation(data)))
    model.save(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["model.json", "state.pt"]
    meta = json.loads((tmp_path / "saved" / "model.json").read_text())
    assert meta["model"] == name and meta["n_items"] == 120
    other = "popularity" if name != "popularity" else "itemknn"
    with pytest.raises(FusionrecError, match=f"holds a '{name}' model, not a '{other}' one"):
        type(build(other)).load(tmp_path / "saved")


def test_score_before_fit_and_bad_ids_are_errors() -> None:
    with pytest.raises(FusionrecError, match="not fitted"):
        build("itemknn").score(np.array([0]), KNN_TRAIN)
    with pytest.raises(FusionrecError, match=r"item id 7 is outside 0\.\.3"):
        build("itemknn").fit(context(frame([(0, 7)]), n_users=1, n_items=4))
    model = build("popularity")
    model.fit(context(KNN_TRAIN, n_users=4, n_items=4))
    with pytest.raises(FusionrecError, match="history: item id 9"):
        model.score(np.array([0]), frame([(0, 9)]))


class RandomScores(Model):
    """Deliberately useless: random scores. The contract must catch it."""

    n_items = 0

    def fit(self, context: FitContext) -> dict[str, Any]:
        self.n_items = context.n_items
        return {}

    def score(self, users: Any, history: pd.DataFrame) -> torch.Tensor:
        if not self.n_items:
            raise RuntimeError("not fitted")
        rows = [torch.rand(self.n_items, generator=torch.Generator().manual_seed(int(user))) for user in users]
        return torch.stack(rows)  # seeded per user: deterministic and batch-independent, just useless

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path) -> Model:
        raise NotImplementedError


class RandomPlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        register("bad.random", RandomScores)


def test_the_contract_catches_a_model_that_ranks_at_random(fusionrec_registry) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_registry(("bad", RandomPlugin()))
    with pytest.raises(AssertionError, match="random ranking gets"):
        check_component("model", "bad.random", registry=registry)
