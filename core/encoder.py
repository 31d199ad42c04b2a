"""The encoder interface: F_m = f_m(raw item content) for one modality m."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


class Encoder(ABC):
    """Turns raw item content of one modality (image paths, texts, …) into fixed-size vectors.

    Frozen encoders (``trainable`` false) run once per item and their vectors are cached; trainable ones expose a
    :class:`torch.nn.Module` through :attr:`module` and are trained end to end with the fuser.

    Attributes:
        modality: the modality this encoder reads (``"image"``, ``"text"``, …).
    """

    modality: str

    @property
    @abstractmethod
    def dim(self) -> int:
        """Size of the vectors :meth:`encode` returns."""

    @property
    def trainable(self) -> bool:
        """Whether the encoder's weights are updated during training (default: frozen)."""
        return False

    @property
    def module(self) -> torch.nn.Module | None:
        """The trainable module, for optimisers and devices; ``None`` for encoders without torch weights."""
        return None

    @abstractmethod
    def encode(self, batch: Sequence[Any]) -> torch.Tensor:
        """Encode a batch of raw items.

        Args:
            batch: one raw value per item (an image path, a text, …); ``None`` never appears here, items without
                this modality are masked out before encoding.

        Returns:
            A float32 tensor of shape ``(len(batch), dim)``.
        """

    def fingerprint(self) -> str:
        """A string that changes whenever the vectors would: name, parameters, weight hashes. Keys the cache."""
        return type(self).__qualname__

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything needed to rebuild this encoder into ``directory`` (created if missing)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Encoder:
        """Rebuild an encoder written by :meth:`save`; its outputs equal the saved one's."""
