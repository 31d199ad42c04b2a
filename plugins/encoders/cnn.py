"""The ``cnn`` image encoder plugin: a small convolutional network trained end to end (the seed's f_CNN).

This module stays light (no torch import); the encoder is :class:`fusionrec.plugins.encoders.cnn_impl.CnnEncoder`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, PositiveInt, model_validator

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class CnnParams(Params):
    """A small CNN: blocks of 3×3 Conv → norm → ReLU → 2×2 MaxPool, global average pool, linear projection."""

    dim: int = Field(128, gt=0, description="Size of the output vector (the linear projection's width).")
    channels: tuple[PositiveInt, ...] = Field(
        (32, 64, 128), min_length=1, max_length=8, description="Output channels of each conv block, in order."
    )
    image_size: int = Field(
        128, ge=8, le=1024, description="Side in pixels that images are resized to (square, aspect not kept)."
    )
    norm: Literal["group", "batch", "none"] = Field(
        "group",
        description="Normalisation after each conv: group (GroupNorm, independent of the batch in training "
        "too), batch (BatchNorm: batch statistics while training, running ones in eval mode) or none.",
    )
    trainable: bool = Field(
        True, description="Train the network end to end with the fuser; false: frozen (random features)."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"dim": 16, "channels": [4, 8], "image_size": 32}]})

    @model_validator(mode="after")
    def _image_survives_pooling(self) -> CnnParams:
        smallest = 2 ** len(self.channels)
        if self.image_size < smallest:
            raise ValueError(
                f"image_size {self.image_size} is too small for {len(self.channels)} blocks (each halves the "
                f"image): use image_size >= {smallest} or fewer channels"
            )
        return self


@hookimpl
def register_encoders(register: Register) -> None:
    register("cnn", "fusionrec.plugins.encoders.cnn_impl:CnnEncoder", params=CnnParams)
