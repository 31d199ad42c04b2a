"""The encoder interface: F_m = f_m(raw item content) for one modality m."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


class Encoder(ABC):
    """Turns raw item content of one modality (image paths, texts, …) into fixed-size vectors.

    Encoding is split in three steps so the feature engine can overlap them: :meth:`preprocess` turns one raw value
    into model input and runs in DataLoader worker processes (image decoding, tokenising); :meth:`collate` batches
    preprocessed values; :meth:`embed` runs the model on a batch. :meth:`encode` chains the three for callers that
    just want vectors.

    Frozen encoders (``trainable`` false) run once per item and their vectors are cached on disk, keyed by
    :meth:`fingerprint`; trainable ones expose a :class:`torch.nn.Module` through :attr:`module` and are trained end
    to end with the fuser. Encoders that learn something from the catalogue itself (a vocabulary, TF-IDF weights)
    do so in :meth:`fit`, which the engine calls with every item's raw value before encoding.

    Factories are called as ``factory(**params)``. The key an encoder has under the pipeline's ``encoders:``
    names the modality in the fused model (``image``, ``text``, ``title``…); :attr:`modality` says which raw input
    of an item the encoder reads.

    Attributes:
        modality: the raw input this encoder reads: ``"image"`` (the item's image path, see
            :data:`fusionrec.core.data.IMAGE`) or ``"text"`` (the item's text, :data:`fusionrec.core.data.TEXT`).
    """

    modality: str

    @property
    @abstractmethod
    def dim(self) -> int:
        """Size of the vectors :meth:`embed` returns."""

    @property
    def trainable(self) -> bool:
        """Whether the encoder's weights are updated during training (default: frozen)."""
        return False

    @property
    def module(self) -> torch.nn.Module | None:
        """The torch module, for optimisers and devices; ``None`` for encoders without torch weights."""
        return None

    def fit(self, corpus: Sequence[Any]) -> None:  # noqa: B027 - optional hook, empty by default
        """Learn what the encoder needs from the catalogue (a vocabulary, IDF weights); default: nothing.

        Args:
            corpus: every item's raw value of this modality (items without it are left out).
        """

    def preprocess(self, raw: Any) -> Any:
        """Turn one raw value (an image path, a text) into model input.

        Runs in DataLoader worker processes, so it must not touch the model and must be picklable with the
        encoder. Raise :class:`OSError` or :class:`ValueError` for an unusable value (an unreadable image): the
        engine marks that item as lacking this modality and counts it; it never stops the run. Default: identity.
        """
        return raw

    def collate(self, items: Sequence[Any]) -> Any:
        """Batch preprocessed values: stacks tensors, passes anything else on as a list."""
        if items and all(isinstance(item, torch.Tensor) for item in items):
            return torch.stack(list(items))
        return list(items)

    @abstractmethod
    def embed(self, batch: Any) -> torch.Tensor:
        """Run the model on a collated batch.

        Returns:
            A float32 tensor of shape ``(batch size, dim)``. Row ``i`` depends only on item ``i`` (no batch
            statistics), so results do not depend on how items are batched.
        """

    def encode(self, batch: Sequence[Any]) -> torch.Tensor:
        """Encode raw values in one go: :meth:`preprocess` each, :meth:`collate`, :meth:`embed`.

        Frozen encoders run under :func:`torch.inference_mode`.
        """
        prepared = self.collate([self.preprocess(raw) for raw in batch])
        if self.trainable:
            return self.embed(prepared)
        with torch.inference_mode():
            return self.embed(prepared)

    def fingerprint(self) -> str:
        """A string that changes whenever the vectors would: name, parameters, weight and fitted-state hashes.

        The feature cache is keyed by it. Runtime knobs that do not change the vectors (batch size, threads)
        must not be part of it. The default, the class's qualified name, is only right for encoders without
        parameters or weights: override it.
        """
        return type(self).__qualname__

    def set_cache_folder(self, folder: Path) -> None:  # noqa: B027 - optional hook, empty by default
        """Tell the encoder the cache folder in use (``features.cache``), before it encodes; default: ignored.

        Encoders that derive files from their weights (an exported inference model) keep them there, keyed by
        their :meth:`fingerprint`; without this call they use :func:`fusionrec.core.io.cache_root`'s default.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything needed to rebuild this encoder into ``directory`` (created if missing)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Encoder:
        """Rebuild an encoder written by :meth:`save`; its outputs equal the saved one's."""
