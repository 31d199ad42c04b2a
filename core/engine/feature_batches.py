"""Running an encoder over many items fast: a DataLoader preprocesses in worker processes while the model runs.

:meth:`Encoder.preprocess <fusionrec.core.encoder.Encoder.preprocess>` (image decoding, resizing, tokenising) runs
per item in ``num_workers`` DataLoader worker processes (``0``: in the main process), so decoding the next batch
overlaps the forward pass of this one. An item whose preprocess raises :class:`OSError` or :class:`ValueError` is
dropped from its batch by the collate function and recorded, never stopping the run. The forward pass runs under
:func:`torch.inference_mode`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fusionrec.core.errors import FusionrecError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from fusionrec.core.encoder import Encoder


@dataclass
class Batch:
    """What the collate function hands to the main process.

    Attributes:
        indices: positions (in the list of raw values) of the items in ``data``, in order.
        data: the collated batch, or ``None`` when every item of it failed.
        failures: ``(position, "ExceptionType: message")`` of the items whose preprocess raised.
    """

    indices: list[int]
    data: Any
    failures: list[tuple[int, str]] = field(default_factory=list)


class ItemDataset:
    """A map-style dataset over raw values that preprocesses one item per ``__getitem__`` (in a worker).

    Returns ``(position, preprocessed, None)`` or ``(position, None, reason)``; only :class:`OSError` and
    :class:`ValueError` count as an unusable item, anything else is a bug and propagates.
    """

    def __init__(self, encoder: Encoder, raws: Sequence[Any]) -> None:
        self.encoder = encoder
        self.raws = list(raws)

    def __len__(self) -> int:
        return len(self.raws)

    def __getitem__(self, position: int) -> tuple[int, Any, str | None]:
        try:
            return position, self.encoder.preprocess(self.raws[position]), None
        except (OSError, ValueError) as exc:
            return position, None, f"{type(exc).__name__}: {exc}"


class Collate:
    """Drops failed items, records them, and batches the rest with the encoder's :meth:`collate`."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, items: Sequence[tuple[int, Any, str | None]]) -> Batch:
        good = [(position, value) for position, value, problem in items if problem is None]
        failures = [(position, problem) for position, _, problem in items if problem is not None]
        data = self.encoder.collate([value for _, value in good]) if good else None
        return Batch([position for position, _ in good], data, failures)


@dataclass
class Encoded:
    """The result of :func:`encode_items`.

    Attributes:
        vectors: ``(len(raws), dim)`` float32; rows of failed items are zero.
        ok: which rows were encoded.
        failures: ``(position, reason)`` of the items whose preprocess raised.
        seconds: wall time of the whole loop.
    """

    vectors: npt.NDArray[np.float32]
    ok: npt.NDArray[np.bool_]
    failures: list[tuple[int, str]]
    seconds: float


def uses_preprocess(encoder: Encoder) -> bool:
    """Whether the encoder has a preprocess step worth worker processes (the default is the identity)."""
    from fusionrec.core.encoder import Encoder

    return type(encoder).preprocess is not Encoder.preprocess


def encode_items(
    encoder: Encoder,
    raws: Sequence[Any],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    threads: int | None = None,
    advance: Callable[[int], None] | None = None,
    label: str = "encoder",
) -> Encoded:
    """Encode ``raws`` in batches; preprocess in ``num_workers`` DataLoader workers, embed in the main process.

    Args:
        encoder: a fitted encoder.
        raws: raw values (image paths, texts), all meant to be encoded.
        batch_size: items per forward pass.
        num_workers: DataLoader worker processes (``0``: preprocess in the main process). Encoders without a
            preprocess step, and runs of one batch or less, use ``0``: a worker would only copy values back and
            forth, or have nothing to overlap with.
        threads: ``torch.set_num_threads`` while encoding (restored afterwards); ``None`` leaves torch's setting.
        advance: called with the number of items done after each batch (a progress bar).
        label: names the encoder in error messages (``encoders.image (timm)``).

    Raises:
        FusionrecError: the encoder returned vectors of the wrong shape.
    """
    import time

    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    start = time.perf_counter()
    dim = encoder.dim
    vectors = np.zeros((len(raws), dim), dtype=np.float32)
    ok = np.zeros(len(raws), dtype=bool)
    failures: list[tuple[int, str]] = []
    if not raws:
        return Encoded(vectors, ok, failures, 0.0)
    # workers pay off only when there is a next batch to prepare while this one runs, and a preprocess step to run
    workers = num_workers if uses_preprocess(encoder) and len(raws) > batch_size else 0
    loader: DataLoader[tuple[int, Any, str | None]] = DataLoader(
        ItemDataset(encoder, raws),  # type: ignore[arg-type]  # a map-style dataset needs only __getitem__/__len__
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=Collate(encoder),
        prefetch_factor=2 if workers else None,
    )
    with _threads(threads), _eval_mode(encoder):
        for batch in loader:
            failures.extend(batch.failures)
            if batch.data is not None:
                with torch.inference_mode():
                    out = encoder.embed(batch.data)
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(batch.indices), dim):
                    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise FusionrecError(
                        f"{label}: embed returned {shape} for a batch of {len(batch.indices)}, expected "
                        f"({len(batch.indices)}, {dim}) (the encoder's dim); this is a bug in the encoder plugin"
                    )
                vectors[batch.indices] = out.detach().to(device="cpu", dtype=torch.float32).numpy()
                ok[batch.indices] = True
            if advance is not None:
                advance(len(batch.indices) + len(batch.failures))
    return Encoded(vectors, ok, failures, time.perf_counter() - start)


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _eval_mode(encoder: Encoder) -> Iterator[None]:
    """A trainable encoder's module in eval mode while its features are computed; its mode restored afterwards."""
    module = encoder.module
    if module is None or not module.training:
        yield
        return
    modes = [(part, part.training) for part in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for part, training in modes:
            part.training = training


__all__ = ["Batch", "Collate", "Encoded", "ItemDataset", "encode_items", "uses_preprocess"]
