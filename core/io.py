"""Atomic file writes (an artifact is either complete or absent, never half-written) and the cache folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CACHE_ENV = "FUSIONREC_CACHE"
"""Environment variable naming the cache folder (features and exported encoder models)."""


def cache_root(configured: Path | None = None) -> Path:
    """The cache folder: ``configured`` (``features.cache``), else ``$FUSIONREC_CACHE``, else the default.

    Feature stores live directly in it; encoders keep exported models under its ``exported/`` folder.
    """
    if configured is not None:
        return Path(configured)
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fusionrec" / "features"


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed over ``target``, on error removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes it owner-only; give it what a plain open() would
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(target: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` with a binary file object whose contents replace ``target`` atomically (fsync'd)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write(target, lambda handle: handle.write(text.encode("utf-8")))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
