"""Contract tests, parametrized over every registered component of every kind (third-party ones included)."""

from __future__ import annotations

import pytest

from fusionrec.registry import KINDS, get_registry
from fusionrec.registry.contracts import CONTRACTS
from fusionrec.registry.testing import check_component

REGISTERED = [(kind.name, name) for kind in KINDS for name in get_registry().table(kind.name)]


def test_built_in_fusers_are_registered() -> None:
    assert {("fuser", "attention"), ("fuser", "concat")} <= set(REGISTERED)


@pytest.mark.parametrize(("kind", "name"), REGISTERED, ids=[f"{k}:{n}" for k, n in REGISTERED])
def test_component_meets_its_contract(kind: str, name: str) -> None:
    check_component(kind, name)


@pytest.mark.parametrize(("kind", "name"), REGISTERED, ids=[f"{k}:{n}" for k, n in REGISTERED])
def test_component_is_documented(kind: str, name: str) -> None:
    info = get_registry().table(kind)[name]
    assert info.summary, f"{kind} {name!r} has no docstring (its first line is its summary)"
    for field, meta in info.params.model_fields.items():
        assert meta.description, f"{kind} {name!r}: parameter {field!r} has no description"


def test_contracts_exist_for_kinds_whose_interface_is_settled() -> None:
    assert {"fuser", "ranker"} <= set(CONTRACTS)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("cross_attention", {"dim": 8, "heads": 2, "dropout": 0.3}),
        ("gated", {"dim": 8, "hidden": 4, "dropout": 0.3}),
        ("low_rank", {"dim": 8, "rank": 1}),
        ("attention", {"dim": 8, "normalize": True, "modality_dropout": 0.3}),
    ],
    ids=["cross-attention-dropout", "gated-dropout", "low-rank-rank-1", "attention-normalize-modality-dropout"],
)
def test_fuser_variants_meet_the_contract(name: str, params: dict[str, object]) -> None:
    check_component("fuser", name, params=params)


@pytest.mark.parametrize(
    "params",
    [{"dim": 8}, {"hidden": [16, 8]}, {"dim": 4, "hidden": [16], "dropout": 0.5}],
    ids=["projected", "hidden-only", "mlp-dropout"],
)
def test_concat_variants_meet_the_contract(params: dict[str, object]) -> None:
    check_component("fuser", "concat", params=params)


@pytest.mark.parametrize("name", ["attention", "concat", "cross_attention", "gated", "low_rank", "mean"])
@pytest.mark.parametrize(
    "input_dims", [{"text": 5}, {"image": 7, "text": 5, "audio": 3}], ids=["one-modality", "three-modalities"]
)
def test_fusers_handle_any_modality_set(name: str, input_dims: dict[str, int]) -> None:
    check_component("fuser", name, context={"input_dims": input_dims})


def test_contract_catches_a_fuser_that_leaks_absent_modalities(fusionrec_registry) -> None:  # type: ignore[no-untyped-def]
    from leaky_plugin import LeakyPlugin

    registry = fusionrec_registry(("leaky", LeakyPlugin()))
    with pytest.raises(AssertionError, match="features of an absent modality changed the output"):
        check_component("fuser", "leaky.sum", registry=registry)


def test_contract_catches_params_that_accept_anything(fusionrec_registry) -> None:  # type: ignore[no-untyped-def]
    from leaky_plugin import LeakyPlugin

    registry = fusionrec_registry(("leaky", LeakyPlugin()))
    with pytest.raises(AssertionError, match="an unknown parameter was accepted"):
        check_component("fuser", "leaky.lax", registry=registry)


def test_components_with_required_params_are_checked_with_their_example(fusionrec_registry) -> None:  # type: ignore[no-untyped-def]
    from plugin_sources import TinyPlugin

    from fusionrec.registry.contracts import example_params

    registry = fusionrec_registry(("tiny", TinyPlugin()))
    params = registry.table("dataset")["tiny.data"].params
    assert example_params(params) == {"path": "data"}
    built = check_component("dataset", "tiny.data", registry=registry)
    assert str(built["path"]).endswith("data")
