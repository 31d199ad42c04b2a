"""The folder an encoder saves itself into: ``encoder.json`` (name, parameters, extras) and optionally ``state.pt``.

``state.pt`` is a plain state dict, read back with ``torch.load(..., weights_only=True)``: nothing in the folder
can run code. ``encoder.json`` is written last, so its presence marks a complete save.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusionrec.core.errors import FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text, read_meta
from fusionrec.core.params import Params

FORMAT = 1
META = "encoder.json"
STATE = "state.pt"


@dataclass
class SavedEncoder:
    """What :func:`read_encoder` found in a folder.

    Attributes:
        params: the encoder's parameters, as saved (JSON values).
        extra: whatever else the encoder saved in ``encoder.json`` (hashes, …).
        state: the state dict from ``state.pt``, or ``None`` when none was saved.
    """

    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None


def write_encoder(directory: Path, name: str, params: Params, module: nn.Module | None = None, **extra: Any) -> None:
    """Save an encoder: its registered ``name``, ``params``, the state of ``module`` (when given) and ``extra``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / STATE
    if module is not None:
        state = {k: v.detach().to("cpu") for k, v in module.state_dict().items()}
        atomic_write(state_file, lambda handle: torch.save(state, handle))
    else:
        state_file.unlink(missing_ok=True)
    meta = {
        "format": FORMAT,
        "type": name,
        "params": params.model_dump(mode="json"),
        "extra": extra,
        "torch": torch.__version__,
    }
    atomic_write_text(directory / META, json.dumps(meta, indent=2))


def read_encoder(directory: Path, name: str) -> SavedEncoder:
    """Read a folder written by :func:`write_encoder` for the encoder registered as ``name``.

    Raises:
        FusionrecError: nothing saved there, another encoder's folder, or unreadable files.
    """
    directory = Path(directory)
    meta = read_meta(directory, META, what="encoder", fmt=FORMAT, expect={"type": name})
    state = None
    state_file = directory / STATE
    if state_file.exists():
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError… for a damaged file
            raise FusionrecError(f"{state_file}: cannot read the saved weights: {exc}") from exc
    return SavedEncoder(params=dict(meta.get("params") or {}), extra=dict(meta.get("extra") or {}), state=state)
