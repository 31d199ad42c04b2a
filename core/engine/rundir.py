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
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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
        resolve: Callable[[str], str] | None = None,
    ) -> RunDir:
        """Start a run in ``path``, or continue the one there when ``resume``.

        Args:
            resolve: turns the saved ``config.yaml`` text into the resolved text the running version would write for
                it (every default filled in), so a run made before a release added a setting with a default that
                keeps the old behaviour still resumes; ``None`` compares the texts as they are.

        Raises:
            RunError: ``path`` holds a run and ``resume`` is false (nothing is overwritten), or ``resume`` is true
                and the run there was made from a different pipeline.
        """
        path = Path(path)
        manifest_file = path / MANIFEST
        if manifest_file.exists():
            run = cls.open(path)
            if not resume:
                raise RunError(
                    f"{path}: a run directory is already there (status: {run.status()}). Pass --resume to continue "
                    "it, or choose another --out (nothing was overwritten)."
                )
            saved = (path / CONFIG).read_text(encoding="utf-8") if (path / CONFIG).exists() else ""
            if saved != config_text and (resolve is None or _resolved(resolve, saved) != config_text):
                raise RunError(
                    f"{path}: cannot resume: the run there was made from a different pipeline (its {CONFIG} differs "
                    "from the resolved pipeline now). Resume with the same pipeline, or choose another --out."
                )
            return run
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
        return run

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


def _resolved(resolve: Callable[[str], str], saved: str) -> str | None:
    """``resolve(saved)``, or ``None`` when the saved config no longer validates (then it is a different pipeline)."""
    try:
        return resolve(saved)
    except FusionrecError:
        return None
