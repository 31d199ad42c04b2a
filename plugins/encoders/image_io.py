"""Opening an item's image for the image encoders: any file Pillow reads, as 8-bit RGB.

Runs in DataLoader worker processes (an encoder's ``preprocess``), so it imports Pillow and numpy only. Every
failure is an :class:`OSError` or :class:`ValueError`, the feature engine's signal to mark the item as imageless.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 1024
"""An image larger than this on both sides is downscaled while it is decoded, to no less than this on its short
side: no image encoder reads more (timm models take 224–600 pixels), and a 10000×10000 photo would otherwise take
300 MB to decode and gigabytes to transform."""

BACKGROUND = (255, 255, 255)
"""What transparent pixels are composited onto (posters and product shots are mostly shown on white)."""


def open_rgb(raw: object, max_side: int | None = MAX_SIDE) -> Image.Image:
    """Decode the image file ``raw`` (a path) fully into an RGB image.

    Handles grayscale, 16-bit grayscale, palette, CMYK and images with an alpha channel (composited onto white),
    and applies the EXIF orientation (photos taken sideways).

    An image larger than ``max_side`` on both sides is downscaled while decoding (by a power of two, never below
    ``max_side``): a JPEG through Pillow's ``draft`` (the decoder skips the detail, so a 10000×10000 photo
    decodes at 1250×1250 in a fraction of the time and memory), other formats with ``reduce`` right after
    decoding. Pillow's ``DecompressionBombWarning`` for images over its pixel limit is not printed: those images
    are exactly the ones downscaled, and the data report says so in its own words.

    Raises:
        OSError: the file is missing, not an image, or truncated.
        ValueError: ``raw`` is not a path, or the image is too large to decode safely.
    """
    if not isinstance(raw, str | os.PathLike) or not str(raw):
        raise ValueError(f"expected an image file path, got {type(raw).__name__}: {raw!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # downscaled below, reported by the data
            opened = Image.open(raw)
        with opened:
            if max_side is not None:
                opened.draft(opened.mode, (max_side, max_side))  # JPEG only; a no-op for other formats
            opened.load()  # decode now: a truncated file fails here, not later in a transform
            upright = ImageOps.exif_transpose(opened)  # a new image: ``opened`` is unusable once closed
            assert upright is not None
            return _to_rgb(_reduce(upright, max_side))
    except Image.DecompressionBombError as exc:  # an Exception, not an OSError
        raise ValueError(f"{raw}: {exc}") from exc
    except (SyntaxError, TypeError, struct.error) as exc:  # a few Pillow decoders raise these on corrupt data
        raise OSError(f"{raw}: cannot decode the image: {exc}") from exc


def _reduce(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` shrunk by the largest whole factor that keeps both sides at least ``max_side`` (box filter)."""
    if max_side is None:
        return image
    factor = min(image.size) // max_side
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce does not support (palette, 1-bit): convert first
        return _to_rgb(image).reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I→RGB conversion clips at 255 instead of scaling the 16-bit range down
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(pixels.max()), 255.0)
        scaled = np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        with warnings.catch_warnings():  # "palette images with transparency expressed in bytes" is only advice
            warnings.simplefilter("ignore")
            image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")
