"""Tests of the gmu plugin, written the way a plugin author would: only fusionrec's public pytest fixtures.

``fusionrec_registry`` and ``check_component`` come from fusionrec's pytest plugin (installed with fusionrec,
entry point ``pytest11``), so nothing needs configuring. The isolated registry does not load installed entry
points, so these tests exercise exactly this source tree's plugin module, installed or not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import fusionrec_gmu.plugin
import pytest
import torch
from fusionrec_gmu.fuser import GatedMultimodalUnit
from fusionrec_gmu.plugin import GatedUnitParams

from fusionrec.core.assembly.config import parse_pipeline
from fusionrec.core.errors import ConfigError
from fusionrec.registry import Registry
from fusionrec.registry.testing import check_component

NAME = "gmu.gated_unit"
DIMS = {"image": 12, "text": 8}


@pytest.fixture
def registry(fusionrec_registry: Callable[..., Registry]) -> Registry:
    # Registered under the entry-point name "gmu", as fusionrec does for the installed package: passing the
    # module alone would register it as "fusionrec_gmu.plugin", and the prefix rule would reject "gmu.…".
    return fusionrec_registry(("gmu", fusionrec_gmu.plugin))


def build(registry: Registry, input_dims: dict[str, int] = DIMS, **params: object) -> GatedMultimodalUnit:
    torch.manual_seed(0)
    fuser = registry.create("fuser", NAME, {"input_dims": input_dims}, **params)
    assert isinstance(fuser, GatedMultimodalUnit)
    return fuser.eval()


def h_reference(fuser: GatedMultimodalUnit, index: int, x: torch.Tensor) -> torch.Tensor:
    """``tanh(W_m x + b_m)`` computed by hand from the module's own weights for modality number ``index``."""
    layer = fuser.proj[index]
    assert isinstance(layer, torch.nn.Linear)
    return torch.tanh(x @ layer.weight.T + layer.bias)


def test_registered_with_its_parameters(registry: Registry) -> None:
    info = registry.table("fuser")[NAME]
    assert info.plugin == "gmu"
    assert info.params is GatedUnitParams
    assert info.factory == "fusionrec_gmu.fuser:GatedMultimodalUnit"
    assert registry.plugins["gmu"].error is None
    assert registry.plugins["gmu"].components == [f"fuser:{NAME}"]
    assert {"concat", "attention"} <= set(registry.table("fuser"))  # the built-ins are still there


def test_registering_under_the_module_name_breaks_the_prefix_rule(
    fusionrec_registry: Callable[..., Registry],
) -> None:
    registry = fusionrec_registry(fusionrec_gmu.plugin)
    record = registry.plugins["fusionrec_gmu.plugin"]
    assert record.error is not None and "must be prefixed" in record.error
    assert NAME not in registry.table("fuser")


def test_contract_with_defaults(registry: Registry) -> None:
    fuser = check_component("fuser", NAME, registry=registry)
    assert fuser.out_dim == 64


def test_contract_with_parameters(registry: Registry) -> None:
    fuser = check_component("fuser", NAME, params={"dim": 8, "dropout": 0.1}, registry=registry)
    assert fuser.out_dim == 8
    assert fuser.dropout.p == pytest.approx(0.1)


def test_contract_with_three_modalities(registry: Registry) -> None:
    # not in alphabetical order on purpose: input_dims fixes the modality order, and save → load must keep it
    context = {"input_dims": {"image": 12, "text": 8, "audio": 5}}
    fuser = check_component("fuser", NAME, params={"dim": 16}, context=context, registry=registry)
    assert fuser.modalities == ("image", "text", "audio")
    assert fuser.gate.in_features == 12 + 8 + 5 + 3
    assert fuser.gate.out_features == 3


def test_unknown_parameter_is_a_config_error_naming_it(registry: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        registry.spec("fuser", {"type": NAME, "dimm": 8})
    message = str(info.value)
    assert "unknown parameter 'dimm'" in message
    assert "Did you mean 'dim'?" in message


@pytest.mark.parametrize(
    ("params", "field"),
    [({"dim": 0}, "dim"), ({"dim": -3}, "dim"), ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout")],
)
def test_out_of_range_values_are_config_errors(registry: Registry, params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        registry.spec("fuser", {"type": NAME, **params})
    assert f"fuser.{field}" in str(info.value) or field in str(info.value)


def test_gate_weights_and_fused_vector_follow_the_formula(registry: Registry) -> None:
    fuser = build(registry, dim=16)
    gen = torch.Generator().manual_seed(3)
    image, text = torch.randn(5, 12, generator=gen), torch.randn(5, 8, generator=gen)
    with torch.no_grad():
        fused, weights = fuser({"image": image, "text": text})
        ones = torch.ones(5, 2)
        logits = torch.cat([image, text, ones], dim=1) @ fuser.gate.weight.T + fuser.gate.bias
        z = torch.softmax(logits, dim=1)
        h_image = h_reference(fuser, 0, image)
        h_text = h_reference(fuser, 1, text)
    torch.testing.assert_close(weights, z)
    torch.testing.assert_close(fused, z[:, :1] * h_image + z[:, 1:] * h_text)
    assert not torch.allclose(weights[0], weights[1]), "the gate should depend on the item, not be constant"


def test_gate_gives_an_absent_modality_no_weight(registry: Registry) -> None:
    fuser = build(registry, dim=16)
    gen = torch.Generator().manual_seed(4)
    image, text = torch.randn(5, 12, generator=gen), torch.randn(5, 8, generator=gen)
    text_present = torch.tensor([True, False, True, False, False])
    mask = {"image": torch.ones(5, dtype=torch.bool), "text": text_present}
    with torch.no_grad():
        fused, weights = fuser({"image": image, "text": text}, mask)
        h_image = h_reference(fuser, 0, image)
    absent = ~text_present
    assert torch.all(weights[absent, 1] == 0)
    torch.testing.assert_close(weights[absent, 0], torch.ones(int(absent.sum())))
    torch.testing.assert_close(fused[absent], h_image[absent])
    assert torch.all(weights[text_present] > 0), "both modalities present: both get some weight"


def test_absent_features_do_not_matter_even_nan(registry: Registry) -> None:
    fuser = build(registry, dim=16)
    gen = torch.Generator().manual_seed(5)
    image, text = torch.randn(4, 12, generator=gen), torch.randn(4, 8, generator=gen)
    mask = {"image": torch.tensor([True, True, False, True]), "text": torch.tensor([True, False, True, True])}
    poisoned_image, poisoned_text = image.clone(), text.clone()
    poisoned_image[2] = float("nan")
    poisoned_text[1] = float("inf")
    with torch.no_grad():
        clean = fuser({"image": image, "text": text}, mask)
        poisoned = fuser({"image": poisoned_image, "text": poisoned_text}, mask)
    assert torch.isfinite(poisoned.fused).all() and torch.isfinite(poisoned.weights).all()
    torch.testing.assert_close(poisoned.fused, clean.fused)
    torch.testing.assert_close(poisoned.weights, clean.weights)


def test_pipeline_yaml_using_the_fuser_validates(registry: Registry) -> None:
    text = textwrap.dedent(
        """\
        fusionrec: 1
        fuser: {type: gmu.gated_unit, dim: 16}
        """
    )
    spec = parse_pipeline(text, registry=registry)
    assert spec.fuser is not None
    assert spec.fuser.type == NAME
    assert spec.fuser.params == GatedUnitParams(dim=16)
    fuser = registry.build(spec.fuser, input_dims=DIMS)
    assert isinstance(fuser, GatedMultimodalUnit) and fuser.out_dim == 16


def test_pipeline_yaml_with_a_misspelt_name_suggests_the_right_one(registry: Registry) -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'gmu\.gated_unit'\?"):
        parse_pipeline("fusionrec: 1\nfuser: {type: gmu.gated_unt}\n", registry=registry)


def test_plugin_module_does_not_import_torch() -> None:
    code = "import sys, fusionrec_gmu.plugin; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing fusionrec_gmu.plugin imported torch\n{result.stderr}"
