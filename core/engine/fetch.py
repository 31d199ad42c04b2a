"""Download a known public dataset: resumable, checksum-verified, extracted atomically.

``fusionrec data fetch NAME --dest DIR`` runs :func:`fetch`. The steps, each of which leaves nothing half-done:

1. Download the archive into ``DIR.zip.part`` beside ``DIR``. When a ``.part`` file is already there (an earlier
   download was interrupted) ask for the rest with an HTTP ``Range`` request; a server that answers ``200`` instead
   of ``206`` sends the whole file again, which replaces the partial one.
2. Check the archive's sha256. On a mismatch the ``.part`` file is removed (resuming it could never succeed).
3. Check every archive entry (no absolute path, no ``..``) before extracting anything, extract into a temporary
   folder beside ``DIR`` and rename it to ``DIR``: ``DIR`` either holds the complete dataset or nothing new.

Only the standard library talks HTTP (``urllib``): it honours the usual proxy variables and verifies TLS
certificates, and ``file://`` URLs work too, for an archive downloaded by other means.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from fusionrec.core.errors import FusionrecError, did_you_mean, list_names

CHUNK = 64 * 1024
DEFAULT_TIMEOUT = 30.0


class DownloadError(FusionrecError):
    """A dataset could not be downloaded, verified or extracted (offline, HTTP error, bad checksum, unsafe archive)."""


@dataclass(frozen=True)
class KnownDataset:
    """A dataset ``fusionrec data fetch`` knows how to get.

    Attributes:
        name: what users type (``movielens-small``).
        url: where the archive is published.
        sha256: the archive's checksum, lower-case hex.
        size: the archive's size in bytes, or ``None`` when unknown.
        root: the folder inside the archive whose contents become the destination (``""``: the archive's top).
        files: files that must be in ``root``; the download is refused when one is missing.
        dataset_type: the dataset plugin that reads the extracted folder.
        dataset_params: extra parameters of that plugin in the suggested ``data:`` line (YAML flow-mapping items).
        note: what users should know about the contents, printed after extraction.
        licence: a one-line licence reminder, printed after extraction.
    """

    name: str
    url: str
    sha256: str
    size: int | None
    root: str
    files: tuple[str, ...]
    dataset_type: str
    dataset_params: str = ""
    note: str = ""
    licence: str = ""


KNOWN: dict[str, KnownDataset] = {
    "movielens-small": KnownDataset(
        name="movielens-small",
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        # as published by TensorFlow Datasets (url_checksums/movielens.txt), size included
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        size=978_202,
        root="ml-latest-small",
        files=("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt"),
        dataset_type="movielens",
        dataset_params="images: null",
        note=(
            "The GroupLens zip has the CSV files only, no posters: the movielens dataset reads it with "
            "`images: null`, every item lacking an image."
        ),
        licence=(
            "MovieLens usage licence (see README.txt): research use only, no commercial use without permission, "
            "redistribution only under the same terms; cite Harper & Konstan 2015, doi:10.1145/2827872."
        ),
    ),
}


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did.

    Attributes:
        dataset: the dataset fetched (with any ``url``/``sha256`` override applied).
        dest: the absolute path of the extracted dataset.
        files: the extracted files, relative to ``dest``.
        downloaded: bytes transferred by this call (0 when nothing was downloaded).
        resumed_from: bytes of an earlier partial download this call continued from (0: none).
        already_present: ``dest`` already held the dataset; nothing was downloaded.
    """

    dataset: KnownDataset
    dest: Path
    files: tuple[str, ...]
    downloaded: int = 0
    resumed_from: int = 0
    already_present: bool = False


def known_dataset(name: str) -> KnownDataset:
    """The :class:`KnownDataset` called ``name``, or a :class:`DownloadError` listing the known ones."""
    try:
        return KNOWN[name]
    except KeyError:
        raise DownloadError(
            f"unknown dataset {name!r}.{did_you_mean(name, list(KNOWN))} Known datasets: {list_names(list(KNOWN))}."
        ) from None


def part_path(dest: Path) -> Path:
    """Where the archive of ``dest`` is downloaded to: ``DEST.zip.part`` beside it."""
    return dest.with_name(dest.name + ".zip.part")


def fetch(
    name: str,
    dest: str | Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchResult:
    """Download the known dataset ``name`` and extract it into ``dest``.

    Args:
        name: a key of :data:`KNOWN`.
        dest: the folder to create; it must not exist or be empty (or already hold this dataset, in which case
            nothing is downloaded).
        url: download from here instead (a mirror, a local server, a ``file://`` URL). The checksum still applies.
        sha256: expect this checksum instead of the known one (for a different build of the archive).
        progress: show a progress bar (on ``console``, when it is a terminal).
        console: where the progress bar goes; stderr by default.
        timeout: seconds to wait for the server before giving up.

    Raises:
        DownloadError: offline, HTTP error, interrupted transfer, checksum mismatch, unsafe or incomplete archive,
            or a ``dest`` that holds something else. The message says what happened to the partial download and
            how to retry.
    """
    dataset = known_dataset(name)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise DownloadError(f"--sha256 {sha256!r} is not a sha256 checksum (64 hexadecimal digits).")
        # another build of the archive: its size is unknown too
        dataset = replace(dataset, sha256=sha256, size=None if sha256 != dataset.sha256 else dataset.size)
    if url is not None:
        dataset = replace(dataset, url=url)
    return fetch_dataset(dataset, dest, progress=progress, console=console, timeout=timeout)


def fetch_dataset(
    dataset: KnownDataset,
    dest: str | Path,
    *,
    progress: bool = True,
    console: Console | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchResult:
    """Download, verify and extract ``dataset`` into ``dest`` (see :func:`fetch`)."""
    dest = Path(os.path.abspath(dest))
    if _holds(dest, dataset):
        return FetchResult(dataset, dest, dataset.files, already_present=True)
    _check_dest(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    console = console or Console(stderr=True, highlight=False)
    downloaded, resumed_from = _download(dataset, part, console=console, progress=progress, timeout=timeout)
    _verify(dataset, part)
    files = _extract(dataset, part, dest)
    part.unlink(missing_ok=True)
    return FetchResult(dataset, dest, files, downloaded=downloaded, resumed_from=resumed_from)


def _holds(dest: Path, dataset: KnownDataset) -> bool:
    return dest.is_dir() and all((dest / f).is_file() for f in dataset.files)


def _check_dest(dest: Path) -> None:
    if not dest.name:
        raise DownloadError(f"--dest {dest} is a file-system root; give a folder to create, such as data/NAME.")
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest} exists and is not a folder; choose another --dest.")
    if dest.is_dir():
        found = sorted(p.name for p in dest.iterdir())
        if found:
            raise DownloadError(
                f"{dest} exists and is not empty (it holds {list_names(found, limit=5)}) but lacks the dataset's "
                "files; fetch only writes a new folder: give a --dest that does not exist or is empty."
            )


# --------------------------------------------------------------------------------------------------- download


def _download(
    dataset: KnownDataset, part: Path, *, console: Console, progress: bool, timeout: float
) -> tuple[int, int]:
    """Bring ``part`` to the complete archive; returns (bytes transferred now, bytes resumed from)."""
    have = part.stat().st_size if part.is_file() else 0
    if dataset.size is not None and have > dataset.size:
        part.unlink()  # longer than the archive can be: not a prefix of it
        have = 0
    if dataset.size is not None and have == dataset.size:
        return 0, have  # complete already (an earlier run stopped before extracting): just verify it
    try:
        response = _open(dataset, part, have, timeout)
        status = getattr(response, "status", None)
        if have and status == 206 and _range_start(response) != have:
            response.close()  # not the range asked for: start over
            part.unlink()
            have = 0
            response = _open(dataset, part, 0, timeout)
        elif have and status != 206:
            have = 0  # the server ignored the Range header and sends everything: replace the partial file
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            part.unlink()  # the server says the partial file is not a prefix it can continue
            return _download(dataset, part, console=console, progress=progress, timeout=timeout)
        raise DownloadError(
            f"{dataset.url}: the server answered HTTP {exc.code} {exc.reason}. {_kept(part)} Check the URL, or "
            "retry later if the server is having trouble (HTTP 5xx)."
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        host = urllib.parse.urlsplit(dataset.url).netloc or "the source"
        raise DownloadError(
            f"{dataset.url}: {_describe(exc, dataset.url, timeout)} {_kept(part)} Retry when {host} is reachable."
        ) from None

    length = _int_header(response, "Content-Length")
    total = have + length if length is not None else dataset.size
    got = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=console, transient=True, disable=not (progress and console.is_terminal))
    try:
        with bar, response, open(part, "ab" if have else "wb") as handle:
            task = bar.add_task(f"{dataset.name}", total=total, completed=have)
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                got += len(chunk)
                bar.advance(task, len(chunk))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(
            f"{dataset.url}: the download stopped after {have + got:,} bytes: {_describe(exc, dataset.url, timeout)} "
            + _kept(part)
        ) from None
    # a complete response of the wrong size is left to the checksum; only a transfer cut short is resumable
    short = got < length if length is not None else dataset.size is not None and have + got < dataset.size
    if short:
        expected = f"{have + length:,}" if length is not None else f"{dataset.size:,}"
        raise DownloadError(
            f"{dataset.url}: the connection closed after {have + got:,} of {expected} bytes. {_kept(part)}"
        )
    return got, have


def _open(dataset: KnownDataset, part: Path, have: int, timeout: float) -> http.client.HTTPResponse:
    from importlib.metadata import PackageNotFoundError, version

    try:
        agent = f"fusionrec/{version('fusionrec')}"
    except PackageNotFoundError:
        agent = "fusionrec"
    headers = {"User-Agent": agent, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(dataset.url, headers=headers)
    response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    return response


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _int_header(response: http.client.HTTPResponse, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def _describe(exc: BaseException, url: str, timeout: float) -> str:
    """Why ``url`` could not be read, as a sentence or two (the caller names the URL)."""
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    host = urllib.parse.urlsplit(url).netloc or url
    if isinstance(reason, socket.gaierror):
        return (
            f"cannot resolve the host {host} ({reason.strerror or reason}): are you offline? Check the network "
            "connection (or proxy settings), or pass --url with a reachable mirror."
        )
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot connect to {host}: connection refused. Is the address right and the server running?"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"no answer from {host} within {timeout:g} s: the network or the server is down or slow."
    if isinstance(reason, ssl.SSLError):
        return f"the TLS connection to {host} failed ({reason}); check the system's certificates or the proxy."
    if isinstance(reason, http.client.IncompleteRead | ConnectionError):
        return f"the connection was cut ({type(reason).__name__})."
    if isinstance(reason, OSError) and reason.strerror:
        return f"cannot read it: {reason.strerror}."
    return f"cannot read it: {reason}."


def _kept(part: Path) -> str:
    """What happened to the partial download."""
    if part.is_file() and part.stat().st_size:
        return (
            f"Nothing was extracted; the partial download {part} ({part.stat().st_size:,} bytes) is kept, and running "
            "the same command again resumes it."
        )
    return "Nothing was written."


# --------------------------------------------------------------------------------------------------- verify


def sha256_of(path: Path) -> str:
    """The sha256 of a file, lower-case hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify(dataset: KnownDataset, part: Path) -> None:
    got = sha256_of(part)
    if got == dataset.sha256:
        return
    size = part.stat().st_size
    part.unlink()
    expected_size = f" of {dataset.size:,} bytes" if dataset.size is not None else ""
    raise DownloadError(
        f"{dataset.url}: checksum mismatch: expected sha256 {dataset.sha256}{expected_size}, got {got} "
        f"({size:,} bytes). The downloaded file was removed and nothing was extracted. Run the command again to "
        "retry; if a mirror serves another build of the archive on purpose, pass its checksum with --sha256."
    )


# --------------------------------------------------------------------------------------------------- extract


def unsafe_entry(name: str) -> bool:
    """True for a zip entry that would land outside the extraction folder: an absolute path or one with ``..``."""
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def _extract(dataset: KnownDataset, archive: Path, dest: Path) -> tuple[str, ...]:
    """Extract ``dataset.root`` of ``archive`` into ``dest`` through a temporary folder; returns the files."""

    def bad(message: str) -> DownloadError:
        archive.unlink(missing_ok=True)
        return DownloadError(
            f"{dataset.url}: {message} Nothing was extracted and the downloaded file was removed; check --url."
        )

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise bad(f"the download is not a readable zip archive ({exc}).") from None
    with zf:
        members: list[tuple[zipfile.ZipInfo, str]] = []
        prefix = dataset.root.strip("/") + "/" if dataset.root else ""
        for info in zf.infolist():
            if unsafe_entry(info.filename):
                raise bad(
                    f"the archive entry {info.filename!r} has an absolute path or '..' and would be written outside "
                    "the destination: the archive is unsafe and was refused."
                )
            if info.is_dir() or not info.filename.startswith(prefix):
                continue  # folders are made as needed; entries beside the root (__MACOSX/...) are not the dataset
            members.append((info, info.filename[len(prefix) :]))
        found = {rel for _, rel in members}
        missing = [f for f in dataset.files if f not in found]
        if missing:
            raise bad(
                f"the archive has no {', '.join(prefix + f for f in missing)}; expected the {dataset.name} layout "
                f"({', '.join(prefix + f for f in dataset.files)})."
            )
        # a private holder beside dest, and in it a folder made with the usual permissions: renamed to dest at the end
        holder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extract", dir=dest.parent))
        work = holder / dest.name
        try:
            work.mkdir()
            for info, rel in members:
                target = work.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
            if dest.is_dir():
                dest.rmdir()  # empty (checked before downloading); rename needs the name free
            os.rename(work, dest)
            holder.rmdir()
        except zipfile.BadZipFile as exc:
            shutil.rmtree(holder, ignore_errors=True)
            raise bad(f"the archive is damaged ({exc}).") from None
        except OSError as exc:
            shutil.rmtree(holder, ignore_errors=True)
            raise DownloadError(
                f"cannot extract into {dest}: {exc.strerror or exc}. The verified archive {archive} is kept: run the "
                "same command again to extract it without downloading."
            ) from None
        except BaseException:
            shutil.rmtree(holder, ignore_errors=True)
            raise
    return tuple(sorted(found))
