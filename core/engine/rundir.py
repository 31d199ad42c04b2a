"""Run directories: what a training run leaves behind, and the manifest that vouches for it.

A run directory holds the resolved pipeline (``config.yaml``), ``manifest.json`` (package versions, seed, stage
status and timings, and the SHA-256 and size of every artifact), the per-epoch log (``epochs.jsonl``), the
checkpoint a killed run resumes from, and the artifacts (item vectors, the user tower, the model, metrics, the
index, the ranker). Every file is written atomically and its checksum recorded after it is complete, so a run
killed at any moment leaves either the old or the new version of each file, and :meth:`RunDir.verify` catches a
file changed or truncated afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml
from filelock import FileLock, Timeout

from fusionrec.core.errors import FusionrecError
from fusionrec.core.io import atomic_write, atomic_write_text

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
FORMAT = 1
PACKAGES = ("fusionrec", "torch", "numpy", "pandas", "faiss-cpu", "faiss-gpu", "timm", "sentence-transformers")


class RunError(FusionrecError):
    """A run directory is missing, incomplete, from another pipeline, or corrupted."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour a run depends on (those installed)."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class RunDir:
    """A run directory and its manifest.

    Attributes:
        path: the folder.
        manifest: the manifest's content (kept in memory, rewritten atomically on every change).
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    # creating and opening -------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        config_text: str,
        *,
        pipeline: Path | None,
        seed: int,
        resume: bool,
        fresh: bool = False,
    ) -> tuple[RunDir, list[str]]:
        """Start a run in ``path``, or continue the one there when ``resume``.

        Returns:
            The run, and what differs between the config the run there was made from and ``config_text``
            (``key.path: old → new`` lines; empty for a new run or the same config). A continued run takes the new
            config; the stages decide what of the old run still holds (:mod:`fusionrec.core.engine.stages`).

        Args:
            fresh: start over in ``path``: the old run is moved aside until the new one has its manifest, then
                deleted.

        Raises:
            RunError: ``path`` holds a run and neither ``resume`` nor ``fresh`` is set (nothing is overwritten), or
                ``path`` is a non-empty folder that holds no run.
        """
        path = Path(path)
        manifest_file = path / MANIFEST
        aside = None
        if fresh and manifest_file.exists():
            aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            path.rename(aside)
        if manifest_file.exists():
            run = cls.open(path)
            if not resume:
                raise RunError(
                    f"{path}: a run directory is already there (status: {run.status()}). Pass --resume to continue "
                    "it, --fresh to start over, or choose another --out (nothing was overwritten)."
                )
            saved = (path / CONFIG).read_text(encoding="utf-8") if (path / CONFIG).exists() else ""
            diff = config_diff(saved, config_text)
            if saved != config_text:
                atomic_write_text(path / CONFIG, config_text)
                run.record(CONFIG)
            return run, diff
        if path.exists() and any(path.iterdir()):
            raise RunError(
                f"{path}: the folder is not empty and holds no run (no {MANIFEST}); choose an empty or new --out."
            )
        path.mkdir(parents=True, exist_ok=True)
        run = cls(
            path,
            {
                "format": FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "pipeline": str(pipeline) if pipeline is not None else None,
                "seed": seed,
                "versions": versions(),
                "stages": {},
                "artifacts": {},
            },
        )
        atomic_write_text(path / CONFIG, config_text)
        run.record(CONFIG)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return run, []

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """Open an existing run directory.

        Raises:
            RunError: no run there, or an unreadable manifest.
        """
        path = Path(path)
        manifest_file = path / MANIFEST
        if not manifest_file.exists():
            hint = "the folder does not exist" if not path.exists() else f"it has no {MANIFEST}"
            raise RunError(
                f"{path}: not a run directory ({hint}). Make one with `fusionrec train PIPELINE.yaml --out {path}`."
            )
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{manifest_file}: unreadable manifest: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise RunError(f"{manifest_file}: not a fusionrec run manifest of format {FORMAT}")
        return cls(path, manifest)

    # artifacts ------------------------------------------------------------------------------------------------

    def write(self, name: str, write: Callable[[IO[bytes]], object]) -> Path:
        """Write artifact ``name`` atomically and record its checksum."""
        target = self.path / name
        atomic_write(target, write)
        self.record(name)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        atomic_write_text(target, text)
        self.record(name)
        return target

    def write_json(self, name: str, value: Any) -> Path:
        return self.write_text(name, json.dumps(value, indent=2, default=_plain) + "\n")

    def record(self, name: str) -> None:
        """Record the checksum of ``name`` (a file, or every file under a folder) in the manifest."""
        target = self.path / name
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        for file in files:
            rel = file.relative_to(self.path).as_posix()
            self.manifest["artifacts"][rel] = {"sha256": sha256(file), "bytes": file.stat().st_size}
        self.save()

    def forget(self, name: str) -> None:
        """Drop ``name`` (and what is under it) from the manifest, e.g. a checkpoint no longer needed."""
        prefix = name.rstrip("/") + "/"
        for rel in [r for r in self.manifest["artifacts"] if r == name or r.startswith(prefix)]:
            del self.manifest["artifacts"][rel]
        self.save()

    def file(self, name: str) -> Path:
        """Path of artifact ``name``, checked against its recorded checksum.

        Raises:
            RunError: missing, not recorded, or its checksum differs (changed or corrupted after the run).
        """
        target = self.path / name
        entry = self.manifest["artifacts"].get(name)
        if not target.exists():
            raise RunError(
                f"{target}: missing from the run directory"
                + (" (the manifest lists it: the run was changed after it finished)" if entry else "")
                + ". Re-run the stage that writes it (`fusionrec train … --resume`)."
            )
        if entry is None:
            raise RunError(f"{target}: not recorded in {MANIFEST}; the run did not finish writing it")
        if sha256(target) != entry["sha256"]:
            raise RunError(
                f"{target}: checksum mismatch with {MANIFEST} (the file was changed or corrupted after it was "
                "written); re-run the stage that writes it."
            )
        return target

    def intact(self, name: str) -> bool:
        """Whether artifact ``name`` (a file, or a folder's recorded files) is recorded, present and unchanged."""
        prefix = name.rstrip("/") + "/"
        files = [rel for rel in self.manifest["artifacts"] if rel == name or rel.startswith(prefix)]
        return bool(files) and all(
            (self.path / rel).is_file() and sha256(self.path / rel) == self.manifest["artifacts"][rel]["sha256"]
            for rel in files
        )

    def problems(self, name: str) -> list[str]:
        """What is wrong with artifact ``name`` (a file or folder): missing, not recorded, checksum mismatch."""
        prefix = name.rstrip("/") + "/"
        files = [rel for rel in self.manifest["artifacts"] if rel == name or rel.startswith(prefix)]
        if not files:
            return [f"{name}: missing (not recorded in {MANIFEST})"]
        out = []
        for rel in files:
            target = self.path / rel
            if not target.is_file():
                out.append(f"{rel}: missing")
            elif sha256(target) != self.manifest["artifacts"][rel]["sha256"]:
                out.append(f"{rel}: checksum mismatch (changed or corrupted after it was written)")
        return out

    def verify(self) -> list[str]:
        """Every recorded artifact that is missing or whose checksum differs (empty: the run is intact)."""
        problems = []
        for rel, entry in sorted(self.manifest["artifacts"].items()):
            target = self.path / rel
            if not target.exists():
                problems.append(f"{rel}: missing")
            elif sha256(target) != entry["sha256"]:
                problems.append(f"{rel}: checksum mismatch")
        return problems

    # stages ---------------------------------------------------------------------------------------------------

    def stage(self, name: str) -> dict[str, Any]:
        return dict(self.manifest["stages"].get(name, {}))

    def done(self, name: str) -> bool:
        return bool(self.manifest["stages"].get(name, {}).get("status") == "done")

    def reset(self, *names: str) -> None:
        """Forget what the manifest says of these stages (status, checkpoint): they start over."""
        for name in names:
            self.manifest["stages"].pop(name, None)
        self.save()

    def mark(self, name: str, status: str, **info: Any) -> None:
        entry = self.manifest["stages"].setdefault(name, {})
        entry.update(info, status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.save()

    def status(self) -> str:
        stages = self.manifest.get("stages", {})
        if not stages:
            return "empty"
        return ", ".join(f"{name} {entry.get('status', '?')}" for name, entry in stages.items())

    def save(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, default=_plain) + "\n")

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunError(f"{self.path / name}: unreadable JSON: {exc}") from exc


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def config_diff(old: str, new: str) -> list[str]:
    """Key-by-key differences between two resolved pipeline texts: ``train.epochs: 10 → 12``."""
    before, after = _flat(yaml.safe_load(old) if old else {}), _flat(yaml.safe_load(new) if new else {})
    lines = []
    for key in sorted(set(before) | set(after), key=lambda k: (k.split(".")[0], k)):
        if before.get(key, _MISSING) != after.get(key, _MISSING):
            lines.append(f"{key}: {_shown(before.get(key, _MISSING))} → {_shown(after.get(key, _MISSING))}")
    return lines


_MISSING = object()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _shown(value: Any) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value, default=str)


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the run folder's writer lock (an OS file lock) while the block runs.

    Raises:
        RunError: another process holds it: "runs/x is being written by pid N since HH:MM".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.parent / f".{path.name}.lock"
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _read_owner(lock_file.with_suffix(".owner"))
        raise RunError(
            f"{path} is being written by {owner}; wait for it to finish, or write to another --out"
        ) from None
    try:
        atomic_write_text(
            lock_file.with_suffix(".owner"), json.dumps({"pid": os.getpid(), "since": time.strftime("%H:%M")})
        )
        yield
    finally:
        lock.release()


def _read_owner(file: Path) -> str:
    try:
        owner = json.loads(file.read_text(encoding="utf-8"))
        return f"pid {owner['pid']} since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
