"""Saving and loading torch-module components (fusers, user towers, …) built from specs.

A saved component is a folder with ``component.json`` (kind, type, resolved parameters, build context, versions)
and ``state.pt`` (the state dict). Loading rebuilds the component through the registry from the spec and loads
the weights with ``torch.load(..., weights_only=True)``: nothing in the folder can run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text, read_meta
from fusionrec.core.params import BuildRecord
from fusionrec.registry import Registry, get_registry

FORMAT = 1


def save_module(module: torch.nn.Module, directory: str | Path) -> Path:
    """Write a component built by :meth:`Registry.build` (it carries its spec) into ``directory``."""
    record: BuildRecord | None = getattr(module, "fusionrec_build", None)
    if record is None:
        raise FusionrecError(
            f"{type(module).__name__} was not built from a spec (Registry.build), so it cannot be saved as a component"
        )
    directory = Path(directory)
    meta = {
        "format": FORMAT,
        "kind": record.spec.kind,
        "spec": record.spec.to_dict(),
        "context": record.context,
        "torch": torch.__version__,
    }
    try:
        text = json.dumps(meta, indent=2)  # no sort_keys: input_dims order is the modality order
    except TypeError as exc:
        raise FusionrecError(
            f"the build context of {record.spec.kind} '{record.spec.type}' is not JSON: {exc}"
        ) from exc
    atomic_write(directory / "state.pt", lambda handle: torch.save(module.state_dict(), handle))
    atomic_write_text(directory / "component.json", text)  # written last: its presence marks a complete save
    return directory


def load_module(directory: str | Path, registry: Registry | None = None) -> Any:
    """Rebuild a component saved by :func:`save_module`; its outputs equal the saved one's."""
    directory = Path(directory)
    meta_file = directory / "component.json"
    meta = read_meta(directory, "component.json", what="component", fmt=FORMAT)
    registry = registry if registry is not None else get_registry()
    try:
        spec = registry.spec(meta["kind"], meta["spec"], file=str(meta_file))
    except ConfigError as exc:
        raise FusionrecError(f"cannot rebuild the saved component: {exc}") from exc
    module = registry.build(spec, **meta["context"])
    try:
        state = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise FusionrecError(f"{directory / 'state.pt'}: cannot load the weights: {exc}") from exc
    return module
