"""Trainable encoders' inputs: every item's raw input, fitted on and preprocessed once, for end-to-end training.

Frozen encoders go through the feature cache (:mod:`fusionrec.core.engine.features`). A trainable encoder (``cnn``,
``rnn`` with ``trainable: true``) gives vectors that change at every optimisation step, so there is nothing to
cache: instead the training engine keeps each item's *preprocessed* input (a resized image tensor, token ids) and
the item tower runs :meth:`Encoder.embed <fusionrec.core.encoder.Encoder.embed>` on the items a batch touches
(:class:`fusionrec.core.engine.two_tower.ItemTower`). Reading the raw inputs, fitting, and counting missing and
unreadable items are the feature engine's own (:func:`~fusionrec.core.engine.features.raw_values`,
:func:`~fusionrec.core.engine.features.fit_encoder`,
:class:`~fusionrec.core.engine.feature_batches.ItemDataset`), so both paths agree on which items have the modality.

A preprocessed float tensor with at most 256 distinct values (an 8-bit image, resized and normalised) is kept as
uint8 codes plus the table of its values: exact, and a quarter of the float32 memory. Token ids are kept as they are.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.core.engine.feature_batches import ItemDataset, uses_preprocess
from fusionrec.core.engine.features import (
    FeatureReport,
    FeaturesRun,
    NamedEncoder,
    fit_encoder,
    known_unreadable,
    pipeline_features,
    raw_values,
)
from fusionrec.core.errors import FusionrecError

if TYPE_CHECKING:
    from rich.console import Console

    from fusionrec.core.assembly.config import FeaturesConfig
    from fusionrec.core.assembly.loading import Loaded
    from fusionrec.core.encoder import Encoder
    from fusionrec.registry import Registry

log = logging.getLogger("fusionrec.features")

CODED_MIN = 256
"""Float tensors with fewer elements are kept as they are: coding them would save next to nothing."""


@dataclass(frozen=True)
class Coded:
    """A float tensor with at most 256 distinct values: ``values[codes]`` rebuilds it exactly."""

    codes: torch.Tensor
    values: torch.Tensor

    def expand(self) -> torch.Tensor:
        return self.values[self.codes.long()]


def compact(value: Any) -> Any:
    """``value`` as :class:`Coded` when that is exact and smaller; anything else unchanged."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() < CODED_MIN:
        return value
    values, codes = torch.unique(value, return_inverse=True)
    if values.numel() > 256 or bool(torch.isnan(values).any()):
        return value
    return Coded(codes.to(torch.uint8), values)


def expand(value: Any) -> Any:
    """Undo :func:`compact`."""
    return value.expand() if isinstance(value, Coded) else value


def _owned(value: Any) -> Any:
    """A value from a DataLoader worker with its tensors copied out of shared memory: each shared tensor kept
    alive holds a file descriptor, and a catalogue's worth of them would exhaust the process's limit."""
    if isinstance(value, Coded):
        return Coded(value.codes.clone(), value.values.clone())
    if isinstance(value, torch.Tensor):
        return value.clone()
    return value


def _compact_batch(items: Sequence[tuple[int, Any, str | None]]) -> list[tuple[int, Any, str | None]]:
    """The DataLoader's collate function: items stay separate, tensors are coded in the worker."""
    return [(position, compact(value) if problem is None else None, problem) for position, value, problem in items]


@dataclass
class EncoderInputs:
    """A trainable encoder and every item's preprocessed input.

    Attributes:
        key: the modality's key under ``encoders:``.
        encoder: the fitted encoder; its :attr:`~fusionrec.core.encoder.Encoder.module` is trained.
        values: per item (internal id order), the preprocessed input (possibly :class:`Coded`); ``None`` where the
            item has no usable input.
        present: ``(n_items,)`` bool: which items have an input.
        report: the counts, as the feature engine reports them (``end_to_end`` set).
    """

    key: str
    encoder: Encoder
    values: list[Any]
    present: npt.NDArray[np.bool_]
    report: FeatureReport

    def batch(self, items: Sequence[int]) -> Any:
        """The encoder's collated batch of the inputs of ``items`` (each must be present)."""
        return self.encoder.collate([expand(self.values[i]) for i in items])

    def for_model(self) -> EncoderInputs:
        """The same inputs with a deep copy of the encoder: a model trains its own copy, so every model built
        from these inputs (a refit, a second run) starts from the same initial weights."""
        return replace(self, encoder=copy.deepcopy(self.encoder))


def prepare_inputs(
    named: NamedEncoder,
    raws: Sequence[Any],
    config: FeaturesConfig,
    rejected: Mapping[int, tuple[str, str]] | None = None,
) -> EncoderInputs:
    """Fit a trainable encoder on the items offering input and preprocess each of them once.

    Preprocessing runs in ``config.workers()`` DataLoader worker processes, as the feature engine's does; an item
    whose preprocess raises :class:`OSError` or :class:`ValueError` is not present and is counted by reason, as
    are the ``rejected`` items the data check found unreadable
    (:func:`~fusionrec.core.engine.features.known_unreadable`).

    Raises:
        FusionrecError: fit failed, or the encoder says it is trainable but has no torch module to train.
    """
    from torch.utils.data import DataLoader

    start = time.perf_counter()
    encoder = named.encoder
    report, candidates = fit_encoder(named, raws, rejected)
    report.end_to_end = True
    if encoder.module is None:
        raise FusionrecError(
            f"encoders.{named.key} ({named.name}): the encoder is trainable but exposes no torch module to train "
            "(its `module` is None after fit); this is a bug in the plugin that registers it"
        )
    values: list[Any] = [None] * len(raws)
    present = np.zeros(len(raws), dtype=bool)
    workers = config.workers() if uses_preprocess(encoder) and len(candidates) > config.batch_size else 0
    loader: DataLoader[tuple[int, Any, str | None]] = DataLoader(
        ItemDataset(encoder, [raws[i] for i in candidates]),  # type: ignore[arg-type]  # map-style: __getitem__/__len__
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_compact_batch,
        prefetch_factor=2 if workers else None,
    )
    for batch in loader:
        for position, value, problem in batch:
            item = candidates[position]
            if problem is not None:
                report.note_unreadable(raws[item], problem)
            else:
                values[item], present[item] = (_owned(value) if workers else value), True
    report.present = report.encoded = int(present.sum())
    report.seconds = report.encode_seconds = time.perf_counter() - start
    log.info(
        "encoders.%s (%s): %d items, %d inputs preprocessed for end-to-end training, %d missing, %d unreadable, %.2f s",
        named.key,
        named.name,
        report.items,
        report.present,
        report.missing,
        report.unreadable_count,
        report.seconds,
    )
    return EncoderInputs(named.key, encoder, values, present, report)


def training_features(
    loaded: Loaded, registry: Registry, *, progress: bool = False, console: Console | None = None
) -> FeaturesRun:
    """The features the two-tower engine trains on: frozen encoders' vectors from the cache (as
    :func:`~fusionrec.core.engine.features.pipeline_features` computes them) and, for each trainable encoder, its
    preprocessed inputs (:attr:`FeaturesRun.inputs`); their reports take the place of the skipped ones.

    Trainable encoders are fitted with torch seeded from ``train.seed`` (the word-vocabulary ``rnn`` builds its
    network in fit), and the global random state is restored afterwards.
    """
    run = pipeline_features(loaded, registry, progress=progress, console=console, trainable="skip")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(loaded.spec.train.seed)
        for position, named in enumerate(run.encoders):
            if not named.encoder.trainable:
                continue
            inputs = prepare_inputs(
                named,
                raw_values(loaded.data, named.encoder),
                loaded.spec.features,
                known_unreadable(loaded.data, named.encoder),
            )
            run.inputs[named.key] = inputs
            run.reports[position] = inputs.report  # one report per encoder, in pipeline order
    run.seconds += time.perf_counter() - start
    return run


__all__ = ["Coded", "EncoderInputs", "compact", "expand", "prepare_inputs", "training_features"]
