"""The `lightgbm` ranker: lambdarank over groups, deterministic, saved as LightGBM's text model without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusionrec.core.assembly.config import parse_pipeline
from fusionrec.core.errors import ConfigError, DataError
from fusionrec.core.ranking import RankingFeatures
from fusionrec.plugins.rankers.lightgbm_impl import LightGBMRanker
from fusionrec.plugins.rankers.ranker_inputs import NotFittedError
from fusionrec.registry import get_registry
from fusionrec.registry.ranker_contracts import auc, synthetic_pairs
from fusionrec.registry.testing import check_component

SMALL = {"num_boost_round": 20, "min_data_in_leaf": 5}


def build(**params: object) -> LightGBMRanker:
    ranker = get_registry().create("ranker", "lightgbm", **params)
    assert isinstance(ranker, LightGBMRanker)
    return ranker


def signal_in_extra(n: int, seed: int) -> tuple[RankingFeatures, torch.Tensor]:
    features, _ = synthetic_pairs(n, seed=seed, extra=2, group_size=20)
    assert features.extra is not None
    return features, (features.extra[:, 0] > 1.0).float()


@pytest.mark.parametrize("params", [{"objective": "binary"}, {"vectors": True, **SMALL}], ids=["binary", "vectors"])
def test_variants_meet_the_contract(params: dict[str, object]) -> None:
    check_component("ranker", "lightgbm", params=params)


@pytest.mark.parametrize("objective", ["lambdarank", "binary"])
def test_it_learns_from_extra_columns_within_groups(objective: str) -> None:
    features, labels = signal_in_extra(2000, seed=0)
    ranker = build(objective=objective, **SMALL)
    ranker.fit(features, labels)
    test, test_labels = signal_in_extra(1000, seed=1)
    assert auc(ranker.score(test), test_labels) > 0.95
    assert "extra_noise_0" in ranker.booster.feature_name()
    importance = dict(zip(ranker.booster.feature_name(), ranker.booster.feature_importance("gain"), strict=True))
    assert max(importance, key=importance.__getitem__) == "extra_noise_0"


def test_groups_need_not_be_contiguous_and_are_used() -> None:
    features, labels = signal_in_extra(600, seed=0)
    shuffle = torch.randperm(600, generator=torch.Generator().manual_seed(0))
    shuffled, ungrouped = build(**SMALL), build(**SMALL)
    shuffled.fit(features.select(shuffle), labels[shuffle])  # each list's rows scattered: sorted into lists inside
    ungrouped.fit(RankingFeatures(features.user, features.item, features.modality_weights, features.retrieval_score,
                                  features.extra, features.extra_names), labels)  # fmt: skip
    test, test_labels = signal_in_extra(500, seed=2)
    assert auc(shuffled.score(test), test_labels) > 0.95
    assert shuffled.booster.model_to_string() != ungrouped.booster.model_to_string()  # lists change the gradients


def test_same_seed_same_trees_even_with_sampling() -> None:
    features, labels = signal_in_extra(500, seed=0)
    params = {"feature_fraction": 0.5, "seed": 3, **SMALL}
    first, second, third = build(**params), build(**params), build(**{**params, "seed": 4})
    for ranker in (first, second, third):
        ranker.fit(features, labels)
    assert first.booster.model_to_string() == second.booster.model_to_string()
    assert not torch.equal(first.score(features), third.score(features))


def test_save_is_a_text_model_and_a_description(tmp_path: Path) -> None:
    features, labels = signal_in_extra(300, seed=0)
    ranker = build(**SMALL)
    ranker.fit(features, labels)
    ranker.save(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["model.txt", "ranker.json"]
    assert (tmp_path / "r" / "model.txt").read_text().startswith("tree\n")
    meta = json.loads((tmp_path / "r" / "ranker.json").read_text())
    assert meta["type"] == "lightgbm" and meta["params"] == ranker.params()
    assert meta["layout"]["extra_names"] == ["noise_0", "noise_1"]
    loaded = LightGBMRanker.load(tmp_path / "r")
    assert torch.equal(loaded.score(features), ranker.score(features))


def test_broken_saves_and_bad_input_are_data_errors(tmp_path: Path) -> None:
    features, labels = signal_in_extra(300, seed=0)
    with pytest.raises(NotFittedError, match="the lightgbm ranker is not fitted"):
        build().score(features)
    ranker = build(**SMALL)
    ranker.fit(features, labels)
    plain, _ = synthetic_pairs(5, seed=1)
    with pytest.raises(DataError, match=r"fitted on extra features \['noise_0', 'noise_1'\] but got \[\]"):
        ranker.score(plain)
    ranker.save(tmp_path / "r")
    (tmp_path / "r" / "model.txt").write_text("not a model")
    with pytest.raises(DataError, match="cannot load the LightGBM model"):
        LightGBMRanker.load(tmp_path / "r")
    (tmp_path / "r" / "ranker.json").write_text('{"format": 1, "type": "mlp"}')
    with pytest.raises(DataError, match="not a saved 'lightgbm' ranker"):
        LightGBMRanker.load(tmp_path / "r")
    padded = torch.full((300,), float("-inf"))
    with pytest.raises(DataError, match="no training pairs"):
        build().fit(RankingFeatures(features.user, features.item, features.modality_weights, padded), labels)


def test_padding_pairs_score_zero() -> None:
    features, labels = signal_in_extra(300, seed=0)
    ranker = build(**SMALL)
    ranker.fit(features, labels)
    score = features.retrieval_score.clone()
    score[:3] = float("-inf")
    scored = ranker.score(RankingFeatures(*(features.user, features.item, features.modality_weights, score),
                                          extra=features.extra, extra_names=features.extra_names))  # fmt: skip
    assert torch.equal(scored[:3], torch.zeros(3)) and bool((scored[3:] > 0).all())


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{type: lightgbm, objective: lambda}", "'lambdarank' or 'binary'"),
        ("{type: lightgbm, num_leaves: 1}", "greater than or equal to 2"),
        ("{type: lightgbm, trees: 5}", "unknown parameter 'trees' for ranker 'lightgbm'"),
    ],
)
def test_bad_parameters_are_config_errors(block: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pipeline(f"fusionrec: 1\nranker: {block}\n")


def test_plugins_info_documents_every_parameter(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # in-process, not a subprocess: a fork after LightGBM trained in this process has crashed it (see the Makefile)
    from fusionrec.core import cli

    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["plugins", "info", "ranker:lightgbm"]) == 0
    out = capsys.readouterr().out
    assert "ranker 'lightgbm'" in out and "Gradient-boosted trees" in out
    for name in ("objective", "num_boost_round", "learning_rate", "num_leaves", "num_threads", "seed", "lambdarank"):
        assert name in out
