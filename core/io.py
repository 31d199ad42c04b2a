"""Files: atomic writes (an artifact is either complete or absent, never half-written), and reading the description
of a saved folder (:func:`read_meta`), one way for every kind of saved component; the
cache folder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fusionrec.core.errors import DataError

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


class SavedFolderError(DataError):
    """A saved component's folder is missing, unreadable, from another format, or holds another component."""


def read_meta(
    directory: str | Path, name: str, *, what: str, fmt: int, expect: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read and check the description file every saved folder carries (``meta.json``, ``component.json`` …).

    Args:
        name: the description's file name in ``directory``.
        what: what the folder holds, for messages ("ranker", "retriever", "encoder", "model", "component").
        fmt: the ``format`` this fusionrec reads.
        expect: keys that must have these values (e.g. ``{"type": "mlp"}``): another value means a foreign folder.

    Raises:
        SavedFolderError: the file is missing or unreadable, or its format or an expected key differs.
    """
    directory = Path(directory)
    meta_file = directory / name
    if not meta_file.is_file():
        raise SavedFolderError(
            f"no saved {what} here ({name} is missing); point to a folder written by the {what}'s save()",
            file=directory,
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SavedFolderError(f"unreadable {what} description ({exc}); save the {what} again", file=meta_file) from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise SavedFolderError(
            f"unsupported format {found!r} (this fusionrec reads {fmt}); save the {what} again", file=meta_file
        )
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise SavedFolderError(
                f"not a saved '{value}' {what} (found {key} {meta.get(key)!r}: it holds a '{meta.get(key)}' {what}, "
                f"not a '{value}' one); load it with that {what}, or save it again",
                file=meta_file,
            )
    return meta
