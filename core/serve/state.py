"""The run being served, and how it is swapped for another without stopping.

A :class:`Served` is one opened run with what the server derives from it (its version, its image folder). The
:class:`ModelHolder` keeps a reference to the current one: a request reads :attr:`ModelHolder.current` once and
uses that object to the end, so a reload (a new :class:`Served` built beside the old one, then one reference
assignment, atomic under the GIL) never changes the model under a request in flight.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fusionrec.core.api import Run
from fusionrec.core.data import IMAGE
from fusionrec.core.engine.recommend import Recommender
from fusionrec.core.errors import FusionrecError
from fusionrec.registry import Registry

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One opened run, ready to answer.

    Attributes:
        run: the run (its :class:`~fusionrec.core.engine.recommend.Recommender` already built).
        created: the run manifest's creation time.
        image_dir: the dataset's image folder (the common folder of every item's image), ``None`` without images.
    """

    run: Run
    created: str
    image_dir: Path | None

    @property
    def recommender(self) -> Recommender:
        return self.run.recommender

    @property
    def version(self) -> str:
        """What ``/metrics`` and ``/readyz`` call the model: the run's path and its manifest's creation time."""
        return f"{self.run.path.resolve()}@{self.created}"

    @classmethod
    def open(cls, path: str | Path, registry: Registry | None = None, *, rerank: str = "auto") -> Served:
        """Open a finished run (every artifact checked against its manifest) and build what serving needs.

        Raises:
            FusionrecError: not a run, unfinished, incomplete or tampered (the message says which and how to fix).
        """
        run = Run.open(path, registry, rerank=rerank)
        recommender = run.recommender  # built now, not lazily by the first requests at once
        return cls(run, str(run.dir.manifest.get("created", "unknown")), image_folder(recommender))


def image_folder(recommender: Recommender) -> Path | None:
    """The folder that holds every item's image (resolved), or ``None`` when no item has one."""
    items = recommender.data.items
    if IMAGE not in items.columns:
        return None
    parents = {str(Path(p).resolve().parent) for p in items[IMAGE] if isinstance(p, str) and p}
    if not parents:
        return None
    return Path(os.path.commonpath(sorted(parents)))


class ReloadError(FusionrecError):
    """A reload that did not happen; the old run keeps serving."""


class ModelHolder:
    """The current :class:`Served` and its atomic replacement.

    Attributes:
        current: the run answering requests now (read it once per request).
        reloads: counts of reloads by result (``ok``, ``failed``), for ``/metrics``.
    """

    def __init__(self, served: Served, registry: Registry | None = None, *, rerank: str = "auto") -> None:
        self.current = served
        self.reloads = {"ok": 0, "failed": 0}
        self._registry = registry
        self._rerank = rerank
        self._lock = threading.Lock()  # one reload at a time; requests never take it

    def reload(self, path: str | Path | None = None) -> Served:
        """Open ``path`` (default: the current run's folder again) beside the current run, then swap.

        Returns:
            the new :class:`Served`.

        Raises:
            ReloadError: the run did not open (its reason in the message), or another reload is in progress; the
                current run keeps serving.
        """
        if not self._lock.acquire(blocking=False):
            raise ReloadError("another reload is in progress; try again when it has finished")
        try:
            target = Path(path) if path is not None else self.current.run.path
            try:
                fresh = Served.open(target, self._registry, rerank=self._rerank)
            except (FusionrecError, OSError) as exc:
                self.reloads["failed"] += 1
                raise ReloadError(f"reload of {target} failed, still serving {self.current.version}: {exc}") from exc
            old, self.current = self.current, fresh
            self.reloads["ok"] += 1
            _log.info("reloaded: %s (was %s)", fresh.version, old.version)
            return fresh
        finally:
            self._lock.release()
