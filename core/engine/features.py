"""The feature engine: each item's raw content → one vector per modality, through the pipeline's encoders.

For every ``encoders:`` entry the engine picks the raw input the encoder reads (the items' ``image`` paths or
``text``), marks items without it as missing, fits the encoder on the rest (:meth:`Encoder.fit`), and encodes them
in batches (:mod:`fusionrec.core.engine.feature_batches`). Frozen encoders go through the on-disk cache
(:mod:`fusionrec.core.engine.feature_cache`): only items whose content key is not in the store for the encoder's
fingerprint are encoded, and the merged store is written back atomically. Trainable encoders are never cached: the
training engine trains them end to end (:mod:`fusionrec.core.engine.encoder_inputs`); here they are skipped or, for
callers that want fixed vectors (the ``model:`` baselines), encoded with their current weights. An item whose
input is unreadable (its preprocess raised ``OSError``/``ValueError``, or its image file cannot be read) is marked
not present and counted by reason; it never stops the run.

``fusionrec features PIPELINE`` and ``fusionrec run`` call :func:`pipeline_features`; everything here returns plain
data and the CLI prints it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fusionrec.core.assembly.config import FeaturesConfig, PipelineSpec, load_pipeline
from fusionrec.core.data import IMAGE, TEXT, InteractionData
from fusionrec.core.engine.feature_batches import encode_items
from fusionrec.core.engine.feature_cache import FeatureStore, cache_root, file_key, text_key
from fusionrec.core.engine.feature_shards import Shard
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from rich.console import Console

    from fusionrec.core.assembly.loading import Loaded
    from fusionrec.core.encoder import Encoder
    from fusionrec.core.engine.encoder_inputs import EncoderInputs

log = logging.getLogger("fusionrec.features")

MAX_EXAMPLES = 3
COLUMNS = {"image": IMAGE, "text": TEXT}
"""The items column each kind of encoder reads."""

MISSING_WORDS = {"image": "no image named, or the file is absent", "text": "no text"}
"""What *missing* means for each kind of input, in the words of the data report."""

Advance = Callable[[int], None]
Trainable = Literal["encode", "skip"]


@dataclass
class NamedEncoder:
    """An encoder of a pipeline: its key under ``encoders:`` (``image``, ``title`` …) and registered name."""

    key: str
    name: str
    encoder: Encoder


@dataclass
class FeatureReport:
    """What extracting one modality did.

    Attributes:
        key: the modality's key under ``encoders:``.
        encoder: the encoder's registered name.
        reads: the raw input it reads (``image`` or ``text``).
        dim: the vectors' width.
        trainable: trainable encoders are not cached (and ``fusionrec features`` skips them).
        skipped: nothing was computed (a trainable encoder under ``trainable="skip"``).
        end_to_end: the encoder is trained end to end with the towers: its inputs were preprocessed once
            (:mod:`fusionrec.core.engine.encoder_inputs`) and its vectors are computed during training.
        items: items in the catalogue.
        present: items with a vector.
        missing: items without the raw input (no image named or its file absent; an empty text), the data
            report's ``missing`` for images.
        unreadable: items whose input is there but cannot be used (an image file that does not decode), by reason
            (the exception type, or the data check that found it): the data report's ``unreadable`` for images,
            plus what only decoding found.
        examples: a few unreadable items with the reason.
        encoded: present items encoded in this run.
        cached: present items whose vectors came from the cache.
        seconds: wall time of the whole modality (fit, content keys, cache, encoding, writing).
        encode_seconds: wall time of the encoding loop alone.
        store: the store folder, for cached encoders.
        fingerprint: the encoder's fingerprint, for cached encoders.
        shard: ``I/N`` when only shard I of N was encoded (``present``, ``encoded``, ``cached`` count its items).
        shard_items: the items offering input that belong to the shard.
        store_problem: why the store found on disk was not used (damaged: its path and the reason); it was
            rebuilt from fresh encodings.
    """

    key: str
    encoder: str
    reads: str
    dim: int
    trainable: bool
    skipped: bool = False
    end_to_end: bool = False
    items: int = 0
    present: int = 0
    missing: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    encoded: int = 0
    cached: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    store: str | None = None
    fingerprint: str | None = None
    shard: str | None = None
    shard_items: int | None = None
    store_problem: str | None = None

    @property
    def unreadable_count(self) -> int:
        return sum(self.unreadable.values())

    def note_unreadable(self, raw: Any, reason: str) -> None:
        """Count an item whose input is unreadable, by reason (``"OSError: …"`` counts as ``OSError``)."""
        kind = reason.split(":", 1)[0]
        self.unreadable[kind] = self.unreadable.get(kind, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{raw}: {reason}")

    @property
    def items_per_s(self) -> float | None:
        """Present items per second of the whole modality."""
        return self.present / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON."""
        rate = self.items_per_s
        return {
            "key": self.key,
            "encoder": self.encoder,
            "reads": self.reads,
            "dim": self.dim,
            "trainable": self.trainable,
            "skipped": self.skipped,
            "end_to_end": self.end_to_end,
            "items": self.items,
            "present": self.present,
            "missing": self.missing,
            "unreadable": self.unreadable_count,
            "unreadable_by_reason": dict(self.unreadable),
            "examples": list(self.examples),
            "encoded": self.encoded,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "items_per_s": round(rate, 2) if rate is not None else None,
            "store": self.store,
            "fingerprint": self.fingerprint,
            "shard": self.shard,
            "shard_items": self.shard_items,
            "store_problem": self.store_problem,
        }


@dataclass
class FeatureMatrix:
    """One modality's features for the whole catalogue.

    Attributes:
        key: the modality's key under ``encoders:``.
        vectors: ``(n_items, dim)`` float32 in internal item id order; rows of items not present are zero. Read-only
            when it is the cache's memory-mapped array (every item present, store rows in catalogue order).
        present: ``(n_items,)`` bool: which items have a vector.
        report: what the extraction did.
    """

    key: str
    vectors: npt.NDArray[np.float32]
    present: npt.NDArray[np.bool_]
    report: FeatureReport


@dataclass
class FeaturesRun:
    """The features of a pipeline: one matrix per computed modality, a report per configured one.

    Attributes:
        encoders: the pipeline's encoders, as built (and fitted, for those computed).
        inputs: trainable encoders' preprocessed inputs, by modality key, when they are trained end to end
            (:func:`fusionrec.core.engine.encoder_inputs.training_features`); empty otherwise.
        shard: the shard encoded (``fusionrec features --shard I/N``), or None for every item.
    """

    cache: Path
    matrices: dict[str, FeatureMatrix]
    reports: list[FeatureReport]
    seconds: float
    encoders: list[NamedEncoder] = field(default_factory=list)
    inputs: dict[str, EncoderInputs] = field(default_factory=dict)
    shard: Shard | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache": str(self.cache),
            "shard": self.shard.label if self.shard else None,
            "seconds": round(self.seconds, 3),
            "modalities": [report.to_dict() for report in self.reports],
        }


def build_encoders(spec: PipelineSpec, registry: Registry) -> list[NamedEncoder]:
    """Build every encoder of ``spec.encoders``, in pipeline order.

    Raises:
        ConfigError: an encoder could not be built (a missing weight package, say), with the pipeline file.
    """
    from fusionrec.core.encoder import Encoder

    built = []
    for key, enc_spec in spec.encoders.items():
        try:
            encoder = registry.build(enc_spec)
        except ConfigError as exc:
            if exc.file is not None or spec.file is None:
                raise
            raise ConfigError(exc.problems, file=spec.file) from (exc.__cause__ or exc)
        if not isinstance(encoder, Encoder):
            raise FusionrecError(
                f"encoders.{key}: encoder '{enc_spec.type}' built a {type(encoder).__name__}, which is not a "
                "fusionrec.core.encoder.Encoder; this is a bug in the plugin that registers it"
            )
        if encoder.modality not in COLUMNS:
            raise FusionrecError(
                f"encoders.{key}: encoder '{enc_spec.type}' reads {encoder.modality!r}; the feature engine knows "
                f"{', '.join(map(repr, COLUMNS))}"
            )
        built.append(NamedEncoder(key, enc_spec.type, encoder))
    return built


def raw_values(data: InteractionData, encoder: Encoder) -> list[Any]:
    """The raw input each item offers ``encoder`` (its image path or its text), in internal id order."""
    return list(data.items[COLUMNS[encoder.modality]].tolist())


def known_unreadable(data: InteractionData, encoder: Encoder) -> dict[int, tuple[str, str]]:
    """Items whose input the data check already found unreadable (image files that do not decode), with why.

    Their image path is ``None`` in the items table; this tells the feature step to count them as *unreadable*,
    as the data report does, not as *missing*.
    """
    images = data.report.images
    if encoder.modality != "image" or images is None:
        return {}
    check = f"data check ({images.check})"
    return {item: (path, f"{check}: {why}") for item, (path, why) in images.unreadable_items.items()}


def has_input(raw: Any, reads: str) -> bool:
    """Whether an item offers this raw input: an image path, or a text that is not blank."""
    if not isinstance(raw, str):
        return False
    return bool(raw.strip()) if reads == "text" else bool(raw)


def extract(
    data: InteractionData,
    encoders: Sequence[NamedEncoder],
    config: FeaturesConfig,
    *,
    trainable: Trainable = "encode",
    cache: bool = True,
    progress: bool = False,
    console: Console | None = None,
    shard: Shard | None = None,
) -> tuple[dict[str, FeatureMatrix], list[FeatureReport]]:
    """Compute every modality's features for ``data``'s catalogue.

    Args:
        data: the loaded data (its ``items`` table).
        encoders: the pipeline's encoders (:func:`build_encoders`).
        config: the pipeline's ``features`` section.
        trainable: ``encode`` trainable encoders too (uncached) or ``skip`` them (reported, no matrix).
        cache: use the on-disk cache for frozen encoders (``False``: encode everything, write nothing).
        progress: show a progress bar per modality on ``console``.
        console: where the progress bars go (default: stderr).
        shard: encode only this shard's items (:mod:`~fusionrec.core.engine.feature_shards`); the matrices then
            hold vectors for those items only.

    Returns:
        The matrices by modality key, and one report per encoder.
    """
    root = cache_root(config.cache)
    matrices: dict[str, FeatureMatrix] = {}
    reports: list[FeatureReport] = []
    with _bars(progress, console) as bars:
        for named in encoders:
            if named.encoder.trainable and trainable == "skip":
                reports.append(_skipped(named, data.n_items))
                continue
            matrix = extract_modality(
                named,
                raw_values(data, named.encoder),
                config,
                root=root,
                cache=cache,
                bars=bars,
                shard=shard,
                item_ids=data.item_ids.tolist(),
                rejected=known_unreadable(data, named.encoder),
            )
            matrices[named.key] = matrix
            reports.append(matrix.report)
    return matrices, reports


def fit_encoder(
    named: NamedEncoder, raws: Sequence[Any], rejected: Mapping[int, tuple[str, str]] | None = None
) -> tuple[FeatureReport, list[int]]:
    """Pick the items offering the encoder's raw input and fit the encoder on them (:meth:`Encoder.fit`).

    ``rejected`` (item → ``(path, reason)``) are items whose input the data check found unreadable: they are
    counted as unreadable, not missing (:func:`known_unreadable`).

    Returns:
        A report with the item counts and the fitted encoder's dim, and the positions of the items offering input.

    Raises:
        FusionrecError: fit failed (the message names the modality and the encoder).
    """
    encoder, reads = named.encoder, named.encoder.modality
    n = len(raws)
    candidates = [i for i, raw in enumerate(raws) if has_input(raw, reads)]
    report = FeatureReport(named.key, named.name, reads, 0, encoder.trainable, items=n)
    chosen = set(candidates)
    for item, (path, reason) in sorted((rejected or {}).items()):
        if item not in chosen:
            report.note_unreadable(path, reason)
    report.missing = n - len(candidates) - report.unreadable_count
    try:
        encoder.fit([raws[i] for i in candidates])
    except FusionrecError:
        raise
    except Exception as exc:
        raise FusionrecError(f"encoders.{named.key} ({named.name}): fit failed: {type(exc).__name__}: {exc}") from exc
    report.dim = encoder.dim
    return report, candidates


def extract_modality(
    named: NamedEncoder,
    raws: Sequence[Any],
    config: FeaturesConfig,
    *,
    root: Path | None = None,
    cache: bool = True,
    bars: Callable[[str, int], Advance] | None = None,
    shard: Shard | None = None,
    item_ids: Sequence[Any] | None = None,
    rejected: Mapping[int, tuple[str, str]] | None = None,
) -> FeatureMatrix:
    """Compute one modality's features for items offering ``raws`` (image paths or texts; ``None`` for none).

    Args:
        named: the encoder, with its key and registered name.
        raws: each item's raw input.
        config: batch size, workers, threads (and the cache folder, unless ``root`` is given).
        root: the cache folder (default: from ``config``).
        cache: use the cache (frozen encoders only).
        bars: ``bars(label, total)`` returns a callback advancing a progress bar.
        shard: encode only the items of this shard (the encoder is still fitted on every item, so all shards
            share its fingerprint and store).
        item_ids: each item's original id, for messages (default: its position).
        rejected: items the data check found unreadable (:func:`known_unreadable`).

    Raises:
        FusionrecError: the encoder returned a vector holding NaN or infinity (never cached, never served).
    """
    import numpy as np

    start = time.perf_counter()
    encoder = named.encoder
    label = f"encoders.{named.key} ({named.name})"
    n = len(raws)
    report, candidates = fit_encoder(named, raws, rejected)
    dim = report.dim
    if shard is not None:
        candidates = shard.owns(candidates)
        report.shard, report.shard_items = shard.label, len(candidates)

    def unreadable(position: int, reason: str) -> None:
        report.note_unreadable(raws[position], reason)

    def encode(positions: list[int]) -> Any:
        advance = bars(f"{named.key} ({named.name})", len(positions)) if bars and positions else None
        encoded = encode_items(
            encoder,
            [raws[i] for i in positions],
            batch_size=config.batch_size,
            num_workers=config.workers(),
            threads=config.threads,
            advance=advance,
            label=label,
        )
        report.encode_seconds = encoded.seconds
        _check_finite(encoded, positions, raws, item_ids, label)
        return encoded

    out: Any
    if encoder.trainable or not cache:
        encoded = encode(candidates)
        for j, reason in encoded.failures:
            unreadable(candidates[j], reason)
        out = np.zeros((n, dim), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        chosen = np.asarray(candidates, dtype=np.int64)[encoded.ok]
        out[chosen] = encoded.vectors[encoded.ok]
        present[chosen] = True
        report.encoded = len(chosen)
    else:
        out, present = _cached(named, raws, candidates, config, root, report, unreadable, encode)
        if report.store_problem:
            log.warning("%s: the feature store was damaged and is rebuilt: %s", label, report.store_problem)
    report.present = int(present.sum())
    report.seconds = time.perf_counter() - start
    _log_report(label, n, report)
    return FeatureMatrix(named.key, out, present, report)


def _log_report(label: str, n: int, report: FeatureReport) -> None:
    log.info(
        "%s: %d items, %d present (%d encoded, %d cached), %d missing, %d unreadable, %.2f s",
        label,
        n,
        report.present,
        report.encoded,
        report.cached,
        report.missing,
        report.unreadable_count,
        report.seconds,
    )


def _cached(
    named: NamedEncoder,
    raws: Sequence[Any],
    candidates: list[int],
    config: FeaturesConfig,
    root: Path | None,
    report: FeatureReport,
    unreadable: Callable[[int, str], None],
    encode: Callable[[list[int]], Any],
) -> tuple[Any, Any]:
    """A frozen encoder through the cache: look up every item's content key, encode the missing, write back."""
    import numpy as np

    encoder, dim = named.encoder, report.dim
    report.fingerprint = fingerprint = encoder.fingerprint()
    folder = root if root is not None else cache_root(config.cache)
    encoder.set_cache_folder(folder)  # where an exported inference model is kept, beside the vectors
    store = FeatureStore(folder, encoder.modality, fingerprint)
    report.store = str(store.path)
    keyed: list[tuple[int, bytes]] = []
    for i in candidates:
        try:
            keyed.append((i, file_key(raws[i]) if encoder.modality == "image" else text_key(raws[i])))
        except (OSError, ValueError) as exc:  # an unreadable file; a text that is not valid Unicode
            unreadable(i, f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")
    old = store.load()
    report.store_problem = store.problem
    if old is not None and old.dim != dim:
        log.warning("feature store %s has dim %d, the encoder %d; re-encoding", store.path, old.dim, dim)
        old = None
    # row of each item's key in the old store (-1: not there); a binary search, no dict over the whole store
    in_old = old.rows_of(np.asarray([key for _, key in keyed], dtype="S32")) if old is not None else None
    old_row = in_old.tolist() if in_old is not None else [-1] * len(keyed)
    todo: dict[bytes, int] = {}  # content key → position in `todo_positions`; equal contents are encoded once
    todo_positions: list[int] = []
    for (i, key), row in zip(keyed, old_row, strict=True):
        if row < 0 and key not in todo:
            todo[key] = len(todo_positions)
            todo_positions.append(i)
    encoded = encode(todo_positions) if todo_positions else None

    failures = dict(encoded.failures) if encoded is not None else {}
    rows: list[tuple[int, int, int, bytes]] = []  # (item, row in the old store or -1, row encoded now or -1, key)
    for (i, key), row in zip(keyed, old_row, strict=True):
        if row >= 0:
            rows.append((i, row, -1, key))
        elif encoded is not None and encoded.ok[todo[key]]:
            rows.append((i, -1, todo[key], key))
        else:
            unreadable(i, failures.get(todo[key], "ValueError: not encoded"))
    positions = np.asarray([row[0] for row in rows], dtype=np.int64)
    old_rows = np.asarray([row[1] for row in rows], dtype=np.int64)
    new_rows = np.asarray([row[2] for row in rows], dtype=np.int64)
    keys = [row[3] for row in rows]
    present = np.zeros(len(raws), dtype=bool)
    present[positions] = True
    from_old = old_rows >= 0
    report.cached, report.encoded = int(from_old.sum()), int((~from_old).sum())
    key_array = np.asarray(keys, dtype="S32")
    # every item present, each with its own content: the store (catalogue rows first) can be the matrix itself
    everything = len(keys) == len(raws) and len(set(keys)) == len(keys)

    if report.encoded == 0 and old is not None and everything and np.array_equal(old.keys[: len(keys)], key_array):
        return old.vectors[: len(keys)], present  # the cached re-run: memory-mapped, nothing copied

    out = np.zeros((len(raws), dim), dtype=np.float32)
    if from_old.any():
        assert old is not None
        out[positions[from_old]] = old.vectors[old_rows[from_old]]
    if encoded is not None and (~from_old).any():
        out[positions[~from_old]] = encoded.vectors[new_rows[~from_old]]
    if report.encoded == 0:
        return out, present
    written = _write(store, key_array, positions, out, dim, named.name)
    if everything:
        return written.vectors[: len(keys)], present
    return out, present


def _check_finite(
    encoded: Any, positions: Sequence[int], raws: Sequence[Any], item_ids: Sequence[Any] | None, label: str
) -> None:
    """Refuse vectors holding NaN or infinity: they would be cached and served as hits."""
    import numpy as np

    bad = np.flatnonzero(encoded.ok & ~np.isfinite(encoded.vectors).all(axis=1))
    if not len(bad):
        return
    item = positions[int(bad[0])]
    name = f"item {item_ids[item]!r}" if item_ids is not None else f"item #{item}"
    more = f" (and {len(bad) - 1:,} more)" if len(bad) > 1 else ""
    raise FusionrecError(
        f"{label}: the encoder returned a vector with NaN or infinity for {name} ({raws[item]!r}){more}; nothing "
        "was cached. A vector like that would poison training and retrieval: check the encoder's weights and "
        "inputs (a fused or half-precision model overflowing, an all-zero input normalised by its norm)"
    )


def _write(store: FeatureStore, keys: Any, positions: Any, out: Any, dim: int, name: str) -> Any:
    """Write the catalogue's rows first (in catalogue order, each key once), then the store's rows it does not use
    (read under the store's lock, so rows another process wrote meanwhile, e.g. another shard's, are kept)."""
    import numpy as np

    _, first = np.unique(keys, return_index=True)
    first = np.sort(first)
    try:
        return store.merge(keys[first], out[positions[first]], dim, {"encoder": name})
    except OSError as exc:
        raise FusionrecError(
            f"cannot write the feature cache {store.path}: {exc.strerror or exc}; free some space, or point "
            "`features.cache` (or $FUSIONREC_CACHE) at another folder"
        ) from exc


def _skipped(named: NamedEncoder, n_items: int) -> FeatureReport:
    encoder = named.encoder
    return FeatureReport(named.key, named.name, encoder.modality, encoder.dim, True, skipped=True, items=n_items)


def check_encoders(spec: PipelineSpec, pipeline: Path) -> None:
    """Raise a clear :class:`ConfigError` when the pipeline has no ``encoders`` section."""
    if not spec.encoders:
        raise ConfigError.at(
            ("encoders",),
            "the pipeline has no `encoders` section, so there are no features to compute; add one, e.g. "
            "`encoders: {image: {type: timm, model: tf_efficientnet_lite0, weights: efficientnet-lite0}}` "
            "(`fusionrec plugins` lists the encoders).",
            file=pipeline,
        )


def pipeline_features(
    loaded: Loaded,
    registry: Registry,
    *,
    progress: bool = False,
    console: Console | None = None,
    trainable: Trainable = "skip",
    shard: Shard | None = None,
) -> FeaturesRun:
    """The features of a loaded pipeline (``fusionrec features`` and the features stage of ``fusionrec run``).

    Trainable encoders are skipped by default: their vectors change while training, so the training engine
    computes them. Encoders are built and fitted with torch seeded from ``train.seed`` (the global random state is
    restored afterwards), so a randomly initialised encoder gets the same weights, and the same fingerprint, in
    ``fusionrec features`` and in every training run of the pipeline. With ``shard``, only that shard's items
    are encoded (``fusionrec features --shard I/N``): the matrices are partial, the cache is what counts.
    """
    import torch

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(loaded.spec.train.seed)
        encoders = build_encoders(loaded.spec, registry)
        matrices, reports = extract(
            loaded.data,
            encoders,
            loaded.spec.features,
            trainable=trainable,
            progress=progress,
            console=console,
            shard=shard,
        )
    seconds = time.perf_counter() - start
    return FeaturesRun(cache_root(loaded.spec.features.cache), matrices, reports, seconds, encoders, shard=shard)


def run_features(
    pipeline: Path,
    registry: Registry,
    *,
    progress: bool = False,
    console: Console | None = None,
    shard: Shard | None = None,
) -> FeaturesRun:
    """``fusionrec features PIPELINE [--shard I/N]``: validate, check there are encoders, load the data, fill the
    cache (with ``shard``, only that shard's items)."""
    from fusionrec.core.assembly import loading

    check_encoders(load_pipeline(pipeline, registry), pipeline)
    loaded = loading.load(pipeline, registry)
    return pipeline_features(loaded, registry, progress=progress, console=console, shard=shard)


def summary_lines(run: FeaturesRun) -> list[str]:
    """What ``fusionrec features`` prints: per modality the encoder, counts, throughput and store."""
    lines = [f"features (cache {run.cache}{f', shard {run.shard.label}' if run.shard else ''}):"]
    for r in run.reports:
        head = f"  {r.key}: {r.encoder} ({r.reads}, dim {r.dim})"
        if r.skipped:
            lines.append(f"{head}: trainable, so not cached; its vectors are computed during training")
            continue
        if r.end_to_end:
            head = f"{head}, trained end to end with the towers"
        lines.append(
            f"{head}: {r.items:,} items: {r.present:,} present, {r.missing:,} missing "
            f"({MISSING_WORDS.get(r.reads, f'no {r.reads}')}), {r.unreadable_count:,} unreadable"
        )
        if r.unreadable:
            reasons = ", ".join(f"{count:,} {reason}" for reason, count in sorted(r.unreadable.items()))
            lines.append(
                f"    unreadable: {reasons}; e.g. {r.examples[0]}" if r.examples else f"    unreadable: {reasons}"
            )
        rate = r.items_per_s
        speed = f" ({rate:,.1f} items/s)" if rate is not None else ""
        if r.end_to_end:
            lines.append(f"    {r.present:,} inputs preprocessed once, not cached; {r.seconds:.2f} s{speed}")
            continue
        if r.shard is not None:
            lines.append(f"    shard {r.shard}: {r.shard_items:,} of the {r.items - r.missing:,} items with {r.reads}")
        cached = "not cached (trainable)" if r.store is None else f"{r.cached:,} from cache"
        lines.append(f"    {r.encoded:,} encoded now, {cached}; {r.seconds:.2f} s{speed}")
        if r.store is not None:
            lines.append(f"    store: {r.store}")
        if r.store_problem is not None:
            lines.append(f"    the store on disk was damaged and was rebuilt: {r.store_problem}")
    lines.append(f"  done in {run.seconds:.2f} s")
    return lines


@contextmanager
def _bars(enabled: bool, console: Console | None) -> Iterator[Callable[[str, int], Advance] | None]:
    """A rich progress display with one bar per encoded modality (items done, items/s, time left).

    Only on a terminal: piped or captured output gets the summary (and the log), not a bar's final frame.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} items/s" if speed else "… items/s")

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Speed(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as display:

        def add(label: str, total: int) -> Advance:
            task = display.add_task(label, total=total)
            return lambda count: display.advance(task, count)

        yield add


__all__ = [
    "FeatureMatrix",
    "FeatureReport",
    "FeaturesRun",
    "NamedEncoder",
    "build_encoders",
    "check_encoders",
    "extract",
    "extract_modality",
    "fit_encoder",
    "has_input",
    "pipeline_features",
    "raw_values",
    "run_features",
    "summary_lines",
]
