"""The contract each kind of component must meet, run by :func:`fusionrec.registry.testing.check_component`.

Every kind gets the generic checks (its parameters validate, an unknown parameter is a ConfigError naming it, it
builds). Kinds whose interface is settled get more: fusers are checked for shapes, dtypes, weights, masks, batch
independence, gradients, seeded determinism and a save/load round trip; datasets and splits as described in
:mod:`fusionrec.registry.data_contracts` (a split partitions its input, deterministically, with valid ids);
retrievers as in :mod:`fusionrec.registry.retriever_contracts`; user towers as in
:mod:`fusionrec.registry.user_tower_contracts`; metrics as in :mod:`fusionrec.registry.metric_contracts` (shapes,
only the first k ranks count, per-user independence, and the usual meaning of the built-in names); rankers as
in :mod:`fusionrec.registry.ranker_contracts` (learns a separable problem, seeded, bad input, save/load); models
as in :mod:`fusionrec.registry.model_contracts` (planted structure recovered, seeded, shapes, save/load).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fusionrec.core.errors import ConfigError
from fusionrec.core.params import ComponentSpec, Params
from fusionrec.registry.data_contracts import dataset_contract, split_contract
from fusionrec.registry.encoder_contracts import encoder_contract
from fusionrec.registry.manager import get_registry
from fusionrec.registry.metric_contracts import metric_contract
from fusionrec.registry.model_contracts import model_contract
from fusionrec.registry.ranker_contracts import ranker_contract
from fusionrec.registry.retriever_contracts import retriever_contract
from fusionrec.registry.tables import KINDS_BY_NAME, Registry
from fusionrec.registry.user_tower_contracts import user_tower_contract

Contract = Callable[[Registry, ComponentSpec, Mapping[str, Any]], Any]


def run_contract(
    kind: str,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> Any:
    registry = registry if registry is not None else get_registry()
    assert kind in KINDS_BY_NAME, f"unknown kind {kind!r}"
    assert name in registry.table(kind), f"{kind} {name!r} is not registered"
    if params is None:
        params = example_params(registry.table(kind)[name].params)
    block = {"type": name, **params}
    bogus = "definitely_not_a_parameter"
    try:
        registry.spec(kind, {**block, bogus: 1})
    except ConfigError as exc:
        assert bogus in str(exc), f"{kind} {name!r}: the error for an unknown parameter does not name it: {exc}"
    else:
        raise AssertionError(f"{kind} {name!r}: an unknown parameter was accepted (params need extra='forbid')")

    try:
        spec = registry.spec(kind, block)
    except ConfigError as exc:
        if kind == "dataset" and all(_missing_path(problem.message) for problem in exc.problems):
            return None  # the example names data this machine lacks (a path must exist to validate)
        raise
    again = registry.spec(kind, spec.to_dict())
    assert again == spec, f"{kind} {name!r}: spec does not round-trip through to_dict(): {spec} != {again}"

    contract = CONTRACTS.get(kind, _generic)
    return contract(registry, spec, context if context is not None else DEFAULT_CONTEXT.get(kind, {}))


def _missing_path(message: str) -> bool:
    """Whether a problem is an existing-path parameter naming a path that is not there."""
    return "does not exist" in message and "expected an existing" in message


def example_params(model: type[Params]) -> dict[str, Any]:
    """The first of a parameter model's ``examples`` (``json_schema_extra``), or ``{}`` (all defaults).

    A component with required parameters (a dataset's ``path``, say) declares a working example this way, and the
    contract tests build it with that example.
    """
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples and isinstance(examples[0], dict):
        return dict(examples[0])
    return {}


def _generic(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    return registry.build(spec, **context)


def _fuser(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    import torch

    from fusionrec.core.fusion import Fuser
    from fusionrec.registry.persist import load_module, save_module

    label = f"fuser {spec.type!r}"
    input_dims: dict[str, int] = dict(context["input_dims"])
    names = list(input_dims)

    def build() -> Fuser:
        torch.manual_seed(0)
        fuser = registry.build(spec, **context)
        assert isinstance(fuser, Fuser), f"{label}: the factory must return a fusionrec.core.fusion.Fuser"
        return fuser

    fuser = build().eval()
    assert fuser.modalities == tuple(names), f"{label}: modalities {fuser.modalities} != {tuple(names)}"
    assert isinstance(fuser.out_dim, int) and fuser.out_dim > 0, f"{label}: out_dim must be a positive int"

    batch = 6
    gen = torch.Generator().manual_seed(1)
    features = {m: torch.randn(batch, d, generator=gen) for m, d in input_dims.items()}
    mask = {m: torch.ones(batch, dtype=torch.bool) for m in names}
    mask[names[0]][1] = False  # first modality missing in row 1
    if len(names) > 1:
        mask[names[1]][2] = False  # second modality missing in row 2
    for m in names:
        mask[m][3] = False  # nothing present in row 3

    with torch.no_grad():
        fused, weights = fuser(features, mask)
    assert fused.shape == (batch, fuser.out_dim), f"{label}: fused shape {tuple(fused.shape)}"
    assert fused.dtype == torch.float32, f"{label}: fused dtype {fused.dtype}, expected float32"
    assert torch.isfinite(fused).all(), f"{label}: fused vectors contain NaN or inf"
    assert weights.shape == (batch, len(names)), f"{label}: weights shape {tuple(weights.shape)}"
    assert (weights >= 0).all(), f"{label}: negative modality weights"
    present = torch.stack([mask[m] for m in names], dim=1)
    assert torch.all(weights[~present] == 0), f"{label}: an absent modality got a non-zero weight"
    sums = weights.sum(dim=1)
    rows = present.any(dim=1)
    assert torch.allclose(sums[rows], torch.ones_like(sums[rows]), atol=1e-5), f"{label}: weights do not sum to 1"
    assert torch.all(sums[~rows] == 0), f"{label}: a row with no modality present has non-zero weights"

    # absent inputs must not matter
    noisy = {m: f.clone() for m, f in features.items()}
    for m in names:
        noisy[m][~mask[m]] = 1e3
    with torch.no_grad():
        fused_noisy, weights_noisy = fuser(noisy, mask)
    assert torch.allclose(fused, fused_noisy, atol=1e-5), f"{label}: features of an absent modality changed the output"
    assert torch.allclose(weights, weights_noisy, atol=1e-6), f"{label}: absent features changed the weights"

    # each row is fused on its own (no batch statistics in eval mode)
    with torch.no_grad():
        single = fuser({m: f[:1] for m, f in features.items()}, {m: k[:1] for m, k in mask.items()})
    assert torch.allclose(single.fused, fused[:1], atol=1e-5), f"{label}: a row's output depends on the batch"

    # a mask of all-present equals no mask at all
    with torch.no_grad():
        unmasked = fuser(features)
        ones = fuser(features, {m: torch.ones(batch, dtype=torch.bool) for m in names})
    assert torch.allclose(unmasked.fused, ones.fused, atol=1e-6), f"{label}: mask=None differs from an all-true mask"

    # gradients reach the present inputs and the parameters
    fuser.train()
    grads = {m: f.clone().requires_grad_(True) for m, f in features.items()}
    out = fuser(grads, mask)
    (out.fused.pow(2).sum() + out.weights.sum()).backward()
    for i, m in enumerate(names):
        grad = grads[m].grad
        assert grad is not None and torch.isfinite(grad).all(), f"{label}: no finite gradient for {m!r}"
        assert grad[present[:, i]].abs().sum() > 0, f"{label}: the gradient does not reach modality {m!r}"
    params = [p for p in fuser.parameters() if p.requires_grad]
    if params:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), (
            f"{label}: parameters get no gradient"
        )
    fuser.eval()

    # the same seed builds the same fuser
    with torch.no_grad():
        again = build().eval()(features, mask)
    assert torch.equal(again.fused, fused), f"{label}: two builds under the same seed differ"

    # save → load gives the same outputs
    with tempfile.TemporaryDirectory() as tmp:
        save_module(fuser, Path(tmp) / "fuser")
        loaded = load_module(Path(tmp) / "fuser", registry).eval()
    with torch.no_grad():
        reloaded = loaded(features, mask)
    assert torch.allclose(reloaded.fused, fused, atol=1e-6), f"{label}: outputs differ after save → load"
    assert torch.allclose(reloaded.weights, weights, atol=1e-6), f"{label}: weights differ after save → load"
    return fuser


DEFAULT_CONTEXT: dict[str, dict[str, Any]] = {
    # three modalities, not in alphabetical order: catches gates that read absent inputs (with two, the one left
    # always weighs 1) and saves that reorder the modalities
    "fuser": {"input_dims": {"text": 8, "image": 12, "audio": 5}},
    "user_tower": {"item_dim": 16, "n_users": 10},
    "metric": {"k": 10},
}
CONTRACTS: dict[str, Contract] = {
    "encoder": encoder_contract,
    "fuser": _fuser,
    "dataset": dataset_contract,
    "split": split_contract,
    "retriever": retriever_contract,
    "ranker": ranker_contract,
    "user_tower": user_tower_contract,
    "metric": metric_contract,
    "model": model_contract,
}
