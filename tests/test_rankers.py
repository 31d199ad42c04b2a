"""The built-in rankers (`logistic`, `mlp`): what they compute, how they fail, and how they save."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fusionrec.core.assembly.config import dumps_pipeline, parse_pipeline
from fusionrec.core.errors import DataError, FusionrecError
from fusionrec.core.ranking import Ranker, RankingFeatures
from fusionrec.plugins.rankers.classifier_impl import ClassifierRanker, LogisticRanker, MLPRanker, NotFittedError
from fusionrec.registry import get_registry
from fusionrec.registry.ranker_contracts import auc, synthetic_pairs
from fusionrec.registry.testing import check_component

NAMES = ("logistic", "mlp")


def build(name: str, **params: object) -> ClassifierRanker:
    ranker = get_registry().create("ranker", name, **params)
    assert isinstance(ranker, ClassifierRanker) and isinstance(ranker, Ranker)
    return ranker


def parts(features: RankingFeatures) -> tuple[torch.Tensor, ...]:
    return (features.user, features.item, features.modality_weights, features.retrieval_score)


def fitted(name: str, n: int = 400, **params: object) -> tuple[ClassifierRanker, RankingFeatures, torch.Tensor]:
    features, labels = synthetic_pairs(n, seed=0)
    ranker = build(name, **{"epochs": 5, **params})
    ranker.fit(features, labels)
    return ranker, features, labels


def test_both_are_registered_with_their_classes() -> None:
    assert type(build("logistic")) is LogisticRanker
    assert type(build("mlp")) is MLPRanker
    assert build("mlp", hidden=[32]).hidden == (32,)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mlp", {"hidden": [], "dropout": 0.0, "batch_size": None, "epochs": 100, "lr": 0.05}),
        ("logistic", {"batch_size": 500, "epochs": 30}),
    ],
    ids=["mlp-without-hidden-layers", "logistic-mini-batches"],
)
def test_variants_meet_the_contract(name: str, params: dict[str, object]) -> None:
    check_component("ranker", name, params=params)


def test_logistic_is_sigmoid_of_a_linear_function_of_the_documented_features() -> None:
    ranker, features, _ = fitted("logistic")
    layer = ranker.network.layers[0]  # type: ignore[union-attr]
    assert isinstance(layer, torch.nn.Linear)
    standardised = (features.retrieval_score - features.retrieval_score.mean()) / features.retrieval_score.std(
        unbiased=False
    )
    x = torch.cat(
        [
            features.user,
            features.item,
            features.user * features.item,
            features.modality_weights,
            standardised.unsqueeze(1),
        ],
        dim=1,
    )
    assert layer.in_features == 8 + 8 + 8 + 3 + 1
    expected = torch.sigmoid(x @ layer.weight[0] + layer.bias[0])
    torch.testing.assert_close(ranker.score(features), expected, atol=1e-5, rtol=1e-5)
    assert math.isclose(ranker.score_mean, float(features.retrieval_score.mean()), rel_tol=1e-5)


def test_the_product_is_left_out_when_user_and_item_sizes_differ() -> None:
    features, labels = synthetic_pairs(50, seed=0, user_dim=5, item_dim=7)
    ranker = build("logistic", epochs=2)
    ranker.fit(features, labels)
    assert ranker.layout is not None and not ranker.layout.product
    assert ranker.layout.width == 5 + 7 + 3 + 1
    assert ranker.score(features).shape == (50,)


@pytest.mark.parametrize("name", NAMES)
def test_learns_and_its_loss_goes_down(name: str) -> None:
    ranker, _, _ = fitted(name, n=1000, epochs=20)
    test, test_labels = synthetic_pairs(500, seed=1)
    assert ranker.losses[-1] < ranker.losses[0]
    assert auc(ranker.score(test), test_labels) > 0.9


def test_same_seed_same_ranker_other_seed_other_ranker() -> None:
    first, features, _ = fitted("mlp", seed=3)
    second, _, _ = fitted("mlp", seed=3)
    third, _, _ = fitted("mlp", seed=4)
    assert torch.equal(first.score(features), second.score(features))
    assert not torch.equal(first.score(features), third.score(features))


def test_fitting_leaves_torchs_global_random_state_alone() -> None:
    state = torch.random.get_rng_state()
    fitted("mlp")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_labels_may_be_bools_or_integers() -> None:
    features, labels = synthetic_pairs(100, seed=0)
    scores = []
    for given in (labels, labels.bool(), labels.long()):
        ranker = build("logistic", epochs=3)
        ranker.fit(features, given)
        scores.append(ranker.score(features))
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])


@pytest.mark.parametrize("name", NAMES)
def test_scoring_before_fitting_says_so(name: str) -> None:
    features, _ = synthetic_pairs(5, seed=0)
    with pytest.raises(NotFittedError, match=f"the {name} ranker is not fitted: call fit\\(\\) before score\\(\\)"):
        build(name).score(features)
    with pytest.raises(FusionrecError, match="not fitted"):
        build(name).save(Path("unused"))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.ones(9), r"labels must have shape \(10,\), one per pair, got \(9,\)"),
        (torch.ones(10, 1), r"labels must have shape \(10,\), one per pair, got \(10, 1\)"),
        (
            torch.tensor([0.0, 1.0, 2.0, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, -1.0]),
            r"labels must be 0 or 1 .*found \[-1.0, 0.5, 2.0\] at 3 of 10 pairs",
        ),
        (torch.full((10,), float("nan")), r"labels must be 0 or 1"),
    ],
    ids=["short", "column", "values", "nan"],
)
def test_bad_labels_are_data_errors(labels: torch.Tensor, message: str) -> None:
    features, _ = synthetic_pairs(10, seed=0)
    with pytest.raises(DataError, match=message):
        build("logistic").fit(features, labels)


def test_bad_features_are_data_errors() -> None:
    features, labels = synthetic_pairs(10, seed=0)
    ranker = build("logistic", epochs=1)
    with pytest.raises(DataError, match="no training pairs"):
        ranker.fit(RankingFeatures(*(t[:0] for t in parts(features))), labels[:0])
    nan = features.user.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(DataError, match=r"RankingFeatures\.user contains NaN or infinite values"):
        ranker.fit(RankingFeatures(nan, features.item, features.modality_weights, features.retrieval_score), labels)
    with pytest.raises(DataError, match=r"retrieval_score must have shape \(n,\), got \(10, 1\)"):
        ranker.fit(
            RankingFeatures(features.user, features.item, features.modality_weights, features.retrieval_score[:, None]),
            labels,
        )
    with pytest.raises(DataError, match="disagree on the number of pairs"):
        ranker.fit(
            RankingFeatures(features.user[:9], features.item, features.modality_weights, features.retrieval_score),
            labels,
        )


def test_padding_pairs_are_skipped_when_fitting_and_score_zero() -> None:
    # a retriever pads with -inf scores when it finds fewer candidates than asked for; their labels mean nothing
    features, labels = synthetic_pairs(300, seed=0)
    padded_score = features.retrieval_score.clone()
    padded_score[::7] = float("-inf")
    padded = RankingFeatures(features.user, features.item, features.modality_weights, padded_score)
    real = torch.isfinite(padded_score)
    with_padding, without = build("mlp", epochs=3), build("mlp", epochs=3)
    with_padding.fit(padded, 1.0 - labels)  # padding rows get wrong labels: they must not count
    without.fit(RankingFeatures(*(t[real] for t in parts(features))), (1.0 - labels)[real])
    scores = with_padding.score(padded)
    assert torch.equal(scores[~real], torch.zeros(int((~real).sum())))
    torch.testing.assert_close(scores[real], without.score(RankingFeatures(*(t[real] for t in parts(padded)))))
    nan_score = features.retrieval_score.clone()
    nan_score[0] = float("nan")
    with pytest.raises(DataError, match=r"retrieval_score contains NaN or \+inf \(only -inf is allowed"):
        with_padding.score(RankingFeatures(features.user, features.item, features.modality_weights, nan_score))
    everything_padded = RankingFeatures(
        features.user, features.item, features.modality_weights, torch.full((300,), float("-inf"))
    )
    with pytest.raises(DataError, match="no training pairs"):
        build("logistic").fit(everything_padded, labels)


def test_features_of_other_sizes_at_score_time_say_what_was_expected() -> None:
    ranker, _, _ = fitted("mlp")
    wider, _ = synthetic_pairs(4, seed=1, user_dim=9, item_dim=9)
    with pytest.raises(DataError) as excinfo:
        ranker.score(wider)
    message = str(excinfo.value)
    assert "fitted on 8-dim user vectors, 8-dim item vectors and 3 modality weights" in message
    assert "but got 9-dim user vectors, 9-dim item vectors and 3 modality weights" in message
    fewer, _ = synthetic_pairs(4, seed=1, modalities=2)
    with pytest.raises(DataError, match="and 2 modality weights"):
        ranker.score(fewer)


def test_inputs_of_another_dtype_are_accepted() -> None:
    ranker, features, _ = fitted("logistic")
    doubles = RankingFeatures(*(t.double() for t in parts(features)))
    torch.testing.assert_close(ranker.score(doubles), ranker.score(features))


@pytest.mark.parametrize("name", NAMES)
def test_save_writes_a_state_dict_and_a_description(name: str, tmp_path: Path) -> None:
    ranker, features, _ = fitted(name)
    ranker.save(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["ranker.json", "ranker.pt"]  # no temporary left
    meta = json.loads((tmp_path / "r" / "ranker.json").read_text())
    assert meta["type"] == name and meta["format"] == 1
    assert meta["layout"] == {"user_dim": 8, "item_dim": 8, "n_modalities": 3, "product": True, "extra_names": []}
    assert build(name, **meta["params"]).params() == ranker.params()  # the recorded params rebuild it
    state = torch.load(tmp_path / "r" / "ranker.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = type(ranker).load(tmp_path / "r")
    assert torch.equal(loaded.score(features), ranker.score(features))


def test_load_refuses_another_rankers_folder_and_broken_files(tmp_path: Path) -> None:
    ranker, _, _ = fitted("logistic")
    ranker.save(tmp_path / "r")
    with pytest.raises(DataError, match=r"not a saved 'mlp' ranker .*found type 'logistic'"):
        MLPRanker.load(tmp_path / "r")
    with pytest.raises(DataError, match=r"no saved ranker here \(ranker.json is missing\)"):
        LogisticRanker.load(tmp_path / "empty")
    (tmp_path / "r" / "ranker.pt").write_bytes(b"not a state dict")
    with pytest.raises(DataError, match="cannot load the ranker's weights"):
        LogisticRanker.load(tmp_path / "r")
    (tmp_path / "r" / "ranker.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable ranker description"):
        LogisticRanker.load(tmp_path / "r")


def test_load_never_unpickles_code(tmp_path: Path) -> None:
    ranker, _, _ = fitted("logistic")
    ranker.save(tmp_path / "r")
    torch.save({"payload": Path("an arbitrary object")}, tmp_path / "r" / "ranker.pt")  # needs full unpickling
    with pytest.raises(DataError, match="cannot load the ranker's weights"):
        LogisticRanker.load(tmp_path / "r")


def test_a_pipeline_validates_and_round_trips_with_each_ranker() -> None:
    for block in ("ranker: {type: mlp, hidden: [32, 16], dropout: 0.2}", "ranker: {type: logistic, batch_size: 512}"):
        spec = parse_pipeline(f"fusionrec: 1\n{block}\n")
        assert spec.ranker is not None
        assert parse_pipeline(dumps_pipeline(spec)) == spec


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{type: mlp, hidden: [0]}", "greater than 0"),
        ("{type: mlp, dropout: 1.0}", "less than 1"),
        ("{type: logistic, epochs: 0}", "greater than or equal to 1"),
        ("{type: logistic, hidden: [8]}", "unknown parameter 'hidden' for ranker 'logistic'"),
    ],
)
def test_bad_parameters_are_config_errors(block: str, message: str) -> None:
    from fusionrec.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_pipeline(f"fusionrec: 1\nranker: {block}\n")


@pytest.mark.gpu
def test_scores_on_the_gpu_equal_the_cpu_scores() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ranker, features, _ = fitted("mlp")
    cpu = ranker.score(features)
    gpu = ranker.score(RankingFeatures(*(t.cuda() for t in parts(features))))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


class LenientRanker(LogisticRanker):
    """Reads any label above 0.5 as relevant instead of refusing labels outside {0, 1}."""

    type_name = "sloppy.lenient"

    def fit(self, features: RankingFeatures, labels: torch.Tensor) -> None:
        super().fit(features, (torch.as_tensor(labels) > 0.5).float())


class BatchStatsRanker(LogisticRanker):
    """Standardises the retrieval score with the statistics of the batch being scored."""

    type_name = "sloppy.batch_stats"

    def score(self, features: RankingFeatures) -> torch.Tensor:
        self.score_mean = float(features.retrieval_score.mean()) if len(features) else 0.0
        return super().score(features)


class ForgetfulRanker(LogisticRanker):
    """Saves nothing of what it learned: load() returns a freshly initialised ranker."""

    type_name = "sloppy.forgetful"

    @classmethod
    def load(cls, directory: Path) -> ForgetfulRanker:
        ranker = super().load(directory)
        assert ranker.network is not None
        ranker.network.reset(torch.Generator().manual_seed(99))
        return ranker


class SloppyPlugin:
    from fusionrec.registry import hookimpl

    @hookimpl
    def register_rankers(self, register):  # type: ignore[no-untyped-def]
        for cls in (LenientRanker, BatchStatsRanker, ForgetfulRanker):
            register(cls.type_name, cls)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sloppy.lenient", "a label of 2 was accepted"),
        ("sloppy.batch_stats", "a pair's score depends on the rest of the batch"),
        ("sloppy.forgetful", r"scores differ after save → load"),
    ],
)
def test_the_contract_catches_broken_rankers(name: str, message: str, fusionrec_registry) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_registry(("sloppy", SloppyPlugin()))
    with pytest.raises(AssertionError, match=message):
        check_component("ranker", name, registry=registry)


def signal_in_extra(n: int, seed: int, group_size: int = 20) -> tuple[RankingFeatures, torch.Tensor]:
    """Pairs whose label is carried by one extra column only (user and item vectors are noise)."""
    features, _ = synthetic_pairs(n, seed=seed, extra=2, group_size=group_size)
    assert features.extra is not None
    labels = (features.extra[:, 1] > 1.0).float()
    user = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed + 100))
    return RankingFeatures(
        user, features.item, features.modality_weights, features.retrieval_score, features.extra,
        features.extra_names, features.groups,
    ), labels  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("objective", ["pointwise", "pairwise"])
def test_extra_columns_are_used_and_standardised(name: str, objective: str) -> None:
    features, labels = signal_in_extra(1000, seed=0)
    ranker = build(name, epochs=30, objective=objective)
    ranker.fit(features, labels)
    assert ranker.layout is not None and ranker.layout.extra_names == ("noise_0", "noise_1")
    assert ranker.layout.width == 8 + 8 + 8 + 3 + 1 + 2
    assert features.extra is not None
    torch.testing.assert_close(ranker.extra_mean, features.extra.mean(dim=0))
    test, test_labels = signal_in_extra(500, seed=1)
    assert auc(ranker.score(test), test_labels) > 0.9


def test_extra_columns_must_match_those_fitted_on() -> None:
    features, labels = signal_in_extra(200, seed=0)
    ranker = build("logistic", epochs=2)
    ranker.fit(features, labels)
    plain, _ = synthetic_pairs(10, seed=1)
    with pytest.raises(DataError, match=r"fitted on extra features \['noise_0', 'noise_1'\] but got \[\]"):
        ranker.score(plain)
    renamed = RankingFeatures(*parts(features), extra=features.extra, extra_names=("a", "b"))
    with pytest.raises(DataError, match=r"but got \['a', 'b'\]"):
        ranker.score(renamed)
    unnamed = RankingFeatures(*parts(features), extra=features.extra, extra_names=("a",))
    with pytest.raises(DataError, match="extra_names names 1 columns but extra has 2"):
        ranker.score(unnamed)
    float_groups = RankingFeatures(*parts(features), groups=torch.zeros(200))
    with pytest.raises(DataError, match="groups must hold integer query ids"):
        build("logistic").fit(float_groups, labels)


def test_pairwise_negatives_come_from_the_positives_group() -> None:
    from fusionrec.plugins.rankers.classifier_impl import sample_pairs

    labels = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0, 0], dtype=torch.float32)
    groups = torch.tensor([5, 5, 5, 2, 2, 9, 7, 7, 5])  # group 9 has no negative: its positive is skipped
    positives, negatives = sample_pairs(labels, groups, torch.Generator().manual_seed(0))
    assert sorted(positives.tolist()) == [0, 3, 6]
    assert all(groups[p] == groups[q] and labels[q] == 0 for p, q in zip(positives, negatives, strict=True))
    drawn = set()
    for seed in range(30):
        p, q = sample_pairs(labels, groups, torch.Generator().manual_seed(seed))
        drawn |= {int(b) for a, b in zip(p, q, strict=True) if int(a) == 0}
    assert drawn == {1, 2, 8}  # every negative of group 5 is drawn


def test_pairwise_needs_a_group_with_both_labels() -> None:
    features, _ = synthetic_pairs(40, seed=0, group_size=2)
    one_label_per_group = torch.tensor([1.0, 1.0] * 10 + [0.0, 0.0] * 10)
    with pytest.raises(DataError, match="pairwise objective needs a group holding both"):
        build("logistic", objective="pairwise", epochs=1).fit(features, one_label_per_group)


def test_pairwise_variant_meets_the_contract() -> None:
    check_component("ranker", "mlp", params={"objective": "pairwise", "epochs": 20})


def test_a_ranker_saved_before_extra_features_existed_still_loads(tmp_path: Path) -> None:
    ranker, features, _ = fitted("logistic")
    ranker.save(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "ranker.json").read_text())
    del meta["layout"]["extra_names"], meta["params"]["objective"]
    (tmp_path / "r" / "ranker.json").write_text(json.dumps(meta))
    state = torch.load(tmp_path / "r" / "ranker.pt", weights_only=True)
    del state["extra_stats"]
    torch.save(state, tmp_path / "r" / "ranker.pt")
    assert torch.equal(LogisticRanker.load(tmp_path / "r").score(features), ranker.score(features))
