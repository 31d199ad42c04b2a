"""The encoder contract, run by :func:`fusionrec.registry.testing.check_component` for every encoder.

Checked on small fixtures (a few sentences; a few tiny JPEGs written to a temporary folder): the factory returns an
:class:`~fusionrec.core.encoder.Encoder` reading ``"image"`` or ``"text"``; after :meth:`fit` on the corpus,
:meth:`encode` gives ``(n, dim)`` finite float32 vectors; the same input gives the same vectors, one item at a time
gives the same as a batch (no batch statistics); two builds with the same parameters have the same fingerprint and
the same vectors; an unusable image raises ``OSError``/``ValueError`` from :meth:`preprocess` (the engine's signal
to mark the item as imageless), never something else; and save → load gives the same vectors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

SENTENCES = (
    "A boy and his toys come to life in a children's adventure.",
    "Two astronauts are stranded on a distant planet.",
    "Ein Kriminalroman über einen Diebstahl in Berlin.",
    "",
    "A romantic comedy about a wedding that goes wrong.",
)
"""Text fixtures: short, long-ish, another language, empty."""


def write_images(folder: Path) -> list[str]:
    """Five small JPEGs of different sizes and colours (and one grayscale), as an image encoder's raw input."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate([(64, 96), (32, 32), (185, 278), (50, 20), (96, 64)]):
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L" if i == 3 else "RGB")
        path = folder / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def encoder_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    import torch

    from fusionrec.core.encoder import Encoder

    label = f"encoder {spec.type!r}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def build() -> Encoder:
            torch.manual_seed(0)
            encoder = registry.build(spec, **context)
            assert isinstance(encoder, Encoder), f"{label}: the factory must return a fusionrec.core.encoder.Encoder"
            return encoder

        encoder = build()
        assert encoder.modality in ("image", "text"), f"{label}: modality must be 'image' or 'text'"
        raws: list[str] = write_images(folder) if encoder.modality == "image" else list(SENTENCES)
        encoder.fit(raws)
        assert isinstance(encoder.dim, int) and encoder.dim > 0, f"{label}: dim must be a positive int"

        def vectors(enc: Encoder, batch: list[str]) -> torch.Tensor:
            out = enc.encode(batch)
            if enc.module is not None:
                enc.module.eval()
            return out.detach()

        if encoder.module is not None:
            encoder.module.eval()
        first = vectors(encoder, raws)
        assert first.shape == (len(raws), encoder.dim), f"{label}: encode gave {tuple(first.shape)}"
        assert first.dtype == torch.float32, f"{label}: vectors are {first.dtype}, expected float32"
        assert torch.isfinite(first).all(), f"{label}: vectors contain NaN or inf"
        assert torch.equal(vectors(encoder, raws), first), f"{label}: the same input gave different vectors"
        one_by_one = torch.cat([vectors(encoder, [raw]) for raw in raws])
        assert torch.allclose(one_by_one, first, atol=1e-4, rtol=1e-4), (
            f"{label}: an item's vector depends on the rest of its batch"
        )

        again = build()
        again.fit(raws)
        if again.module is not None:
            again.module.eval()
        assert isinstance(encoder.fingerprint(), str) and encoder.fingerprint(), f"{label}: empty fingerprint"
        assert again.fingerprint() == encoder.fingerprint(), f"{label}: same parameters, different fingerprints"
        assert torch.allclose(vectors(again, raws), first, atol=1e-5), f"{label}: two builds under one seed differ"

        if encoder.modality == "image":
            broken = folder / "broken.jpg"
            broken.write_bytes(b"not an image at all")
            for bad in (str(broken), str(folder / "missing.jpg")):
                try:
                    encoder.preprocess(bad)
                except (OSError, ValueError):
                    pass
                else:
                    raise AssertionError(f"{label}: preprocess accepted an unusable image {bad!r}")

        encoder.save(folder / "saved")
        loaded = type(encoder).load(folder / "saved")
        if loaded.module is not None:
            loaded.module.eval()
        assert loaded.dim == encoder.dim and loaded.modality == encoder.modality, f"{label}: load changed dim/modality"
        assert torch.allclose(vectors(loaded, raws), first, atol=1e-5), f"{label}: vectors differ after save → load"
        assert loaded.fingerprint() == encoder.fingerprint(), f"{label}: fingerprint changed after save → load"
    return encoder
