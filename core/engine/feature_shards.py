"""Sharded feature extraction: which items one of N workers encodes (``fusionrec features --shard I/N``).

Shard ``I`` of ``N`` owns the items at catalogue positions ``p`` with ``p % N == I`` (positions in internal id
order, which the dataset fixes): a deterministic split that every worker computes alone, with no coordination,
and that spreads items of every kind evenly. Each worker fits its encoders on the whole catalogue (so every shard
gets the same encoder fingerprint, hence the same store) and encodes only its items; the store takes concurrent
writes under a file lock (:meth:`~fusionrec.core.engine.feature_cache.FeatureStore.merge`). Under ``torchrun``
(``RANK`` and ``WORLD_SIZE`` in the environment) each rank takes shard ``RANK/WORLD_SIZE`` without ``--shard``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fusionrec.core.errors import FusionrecError

RANK_ENV, WORLD_SIZE_ENV = "RANK", "WORLD_SIZE"
"""What torchrun (``torch.distributed.run``) sets for each worker."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the items at positions ``p`` with ``p % count == index``."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, positions: Sequence[int]) -> list[int]:
        """The positions of ``positions`` that belong to this shard, in order."""
        return [p for p in positions if p % self.count == self.index]


def parse_shard(text: str, what: str = "--shard") -> Shard:
    """``"I/N"`` → :class:`Shard`; a FusionrecError naming ``what`` unless ``0 ≤ I < N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise FusionrecError(
            f"{what} {text!r}: expected I/N, this worker's shard I of N workers (0 ≤ I < N), e.g. --shard 0/2"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise FusionrecError(
            f"{what} {text!r}: the shard I must be in 0..N-1 and N at least 1; with N={count} give "
            f"{'0' if count == 1 else f'0 to {count - 1}'}"
        )
    return Shard(index, count)


def shard_from_env(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard a torchrun worker takes (``RANK``/``WORLD_SIZE``), or None outside one (or for one worker)."""
    env = os.environ if environ is None else environ
    rank, world = env.get(RANK_ENV, "").strip(), env.get(WORLD_SIZE_ENV, "").strip()
    if not rank and not world:
        return None
    if not rank or not world:
        raise FusionrecError(
            f"{RANK_ENV}={rank or '(unset)'} and {WORLD_SIZE_ENV}={world or '(unset)'}: torchrun sets both; set "
            "both, unset both, or give --shard I/N"
        )
    shard = parse_shard(f"{rank}/{world}", f"{RANK_ENV}/{WORLD_SIZE_ENV}")
    return shard if shard.count > 1 else None


def resolve_shard(option: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard to encode: ``--shard`` when given, else torchrun's ``RANK/WORLD_SIZE``, else None (everything)."""
    if option is not None:
        shard = parse_shard(option)
        return shard if shard.count > 1 else None
    return shard_from_env(environ)


__all__ = ["RANK_ENV", "WORLD_SIZE_ENV", "Shard", "parse_shard", "resolve_shard", "shard_from_env"]
