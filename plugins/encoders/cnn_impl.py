"""The ``cnn`` image encoder: Conv → norm → ReLU → MaxPool blocks, global average pool, linear projection."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fusionrec.core.encoder import Encoder
from fusionrec.core.params import as_kwargs
from fusionrec.plugins.encoders.cnn import CnnParams
from fusionrec.plugins.encoders.encoder_files import read_encoder, write_encoder
from fusionrec.plugins.encoders.image_io import open_rgb
from fusionrec.plugins.encoders.timm_weights import state_sha256

MEAN = STD = 0.5
"""Pixels are scaled to [0, 1] then normalised to [-1, 1]."""

PREPROCESS = "resize-bilinear-square|mean=0.5|std=0.5"
"""Names the preprocessing in the fingerprint: change it whenever preprocess() changes."""


class ConvNet(nn.Module):
    """The network: ``len(channels)`` blocks that each halve the image, then pooling and a projection to ``dim``."""

    def __init__(self, dim: int, channels: Sequence[int], norm: str) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = 3
        for out_channels in channels:
            blocks.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none"))
            if norm == "group":
                blocks.append(nn.GroupNorm(math.gcd(out_channels, 8), out_channels))
            elif norm == "batch":
                blocks.append(nn.BatchNorm2d(out_channels))
            blocks += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = nn.Linear(in_channels, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(self.features(images)).flatten(1))  # type: ignore[no-any-return]


class CnnEncoder(Encoder):
    """A small CNN trained end to end with the fuser (the seed paper's f_CNN: Conv2D/MaxPool blocks).

    Blocks of 3×3 convolution, normalisation (GroupNorm by default, so an item's vector never depends on its
    batch), ReLU and 2×2 max pooling; then global average pooling and a linear projection to ``dim``. Images are
    resized to ``image_size`` × ``image_size`` and normalised to [-1, 1].
    """

    modality = "image"
    name = "cnn"

    def __init__(
        self,
        dim: int = 128,
        channels: Sequence[int] = (32, 64, 128),
        image_size: int = 128,
        norm: str = "group",
        trainable: bool = True,
        *,
        _state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.params = CnnParams(
            dim=dim, channels=tuple(channels), image_size=image_size, norm=norm, trainable=trainable
        )  # type: ignore[arg-type]
        self.net = ConvNet(dim, self.params.channels, self.params.norm)
        if _state is not None:
            self.net.load_state_dict(_state, strict=True)
        self._trainable = trainable
        if not trainable:
            self.net.eval()
            self.net.requires_grad_(False)
        self._state_id: str | None = None

    @property
    def dim(self) -> int:
        return self.params.dim

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def module(self) -> nn.Module:
        return self.net

    def preprocess(self, raw: Any) -> torch.Tensor:
        """Open the image as RGB, resize it to a square of ``image_size``, scale to [-1, 1] (channels first)."""
        size = self.params.image_size
        image = open_rgb(raw).resize((size, size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - MEAN) / STD

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        device = next(self.net.parameters()).device
        out: torch.Tensor = self.net(batch.to(device, non_blocking=True))
        return out.float()

    def fingerprint(self) -> str:
        if self._trainable:
            state = state_sha256(self.net)  # training changes the weights: hash what is there now
        else:
            if self._state_id is None:
                self._state_id = state_sha256(self.net)
            state = self._state_id
        params = self.params.model_dump(mode="json", exclude={"trainable"})
        return json.dumps(
            {"encoder": self.name, "params": params, "preprocess": PREPROCESS, "weights": f"state:{state}"},
            sort_keys=True,
            separators=(",", ":"),
        )

    def save(self, directory: Path) -> None:
        write_encoder(Path(directory), self.name, self.params, self.net)

    @classmethod
    def load(cls, directory: Path) -> CnnEncoder:
        saved = read_encoder(Path(directory), cls.name)
        params = CnnParams.model_validate(saved.params)
        return cls(**as_kwargs(params), _state=saved.state)
