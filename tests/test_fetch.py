"""`fusionrec data fetch`: download, resume, verify, extract atomically; against a loopback HTTP server only."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fusionrec.core import cli
from fusionrec.core.engine.fetch import (
    KNOWN,
    DownloadError,
    KnownDataset,
    fetch,
    fetch_dataset,
    part_path,
    unsafe_entry,
)

REPO = Path(__file__).resolve().parents[1]
LAYOUT = ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt")


def make_zip(path: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A small archive with the ml-latest-small layout, stored uncompressed so it spans several read chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-latest-small/", b"")
        rows = "".join(f"{u},{m},4.0,{964982703 + u * m}\n" for u in range(1, 60) for m in range(1, 60))
        archive.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n" + rows * 20)
        archive.writestr("ml-latest-small/movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation\n")
        archive.writestr("ml-latest-small/tags.csv", "userId,movieId,tag,timestamp\n1,1,fun,964982703\n")
        archive.writestr("ml-latest-small/links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n")
        archive.writestr("ml-latest-small/README.txt", "Usage License\n")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path.read_bytes()


@dataclass
class Server:
    """What the loopback server sends, and the Range header of every request it got."""

    payload: bytes = b""
    honour_range: bool = True
    truncate_next: bool = False
    ranges: list[str | None] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.ranges.append(self.headers.get("Range"))
            if self.path != "/ml-latest-small.zip":
                self.send_error(404)
                return
            data, start = state.payload, 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and state.honour_range:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.truncate_next:
                state.truncate_next = False
                self.wfile.write(body[: len(body) // 2])  # then the handler returns and the connection closes
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/ml-latest-small.zip"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: never let a proxy setting route the test traffic elsewhere."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


def dataset_for(server: Server, payload: bytes, *, size: bool = True) -> KnownDataset:
    """The movielens-small entry pointed at the loopback server, expecting ``payload``."""
    server.payload = payload
    return replace(
        KNOWN["movielens-small"],
        url=server.url,
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload) if size else None,
    )


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_good_download_is_verified_and_extracted(server: Server, tmp_path: Path) -> None:
    payload = make_zip(tmp_path / "good.zip")
    dataset = dataset_for(server, payload)
    dest = tmp_path / "out" / "movielens-small"
    result = fetch_dataset(dataset, dest, progress=False)
    assert result.dest == dest and result.downloaded == len(payload) and result.resumed_from == 0
    assert sorted(result.files) == sorted(LAYOUT)
    assert sorted(p.name for p in dest.iterdir()) == sorted(LAYOUT)
    with zipfile.ZipFile(tmp_path / "good.zip") as archive:
        assert (dest / "ratings.csv").read_bytes() == archive.read("ml-latest-small/ratings.csv")
    assert leftovers(dest.parent) == ["movielens-small"], "no .part file or temporary folder is left behind"
    assert server.ranges == [None]
    again = fetch_dataset(dataset, dest, progress=False)
    assert again.already_present and server.ranges == [None], "a complete DEST is not downloaded again"


def test_checksum_mismatch_removes_the_download_and_extracts_nothing(server: Server, tmp_path: Path) -> None:
    payload = make_zip(tmp_path / "good.zip")
    dataset = dataset_for(server, payload)
    server.payload = payload[:-10] + b"corrupted!"  # same size, different bytes
    dest = tmp_path / "out" / "movielens-small"
    with pytest.raises(DownloadError) as caught:
        fetch_dataset(dataset, dest, progress=False)
    message = str(caught.value)
    assert f"expected sha256 {dataset.sha256}" in message
    assert f"got {hashlib.sha256(server.payload).hexdigest()}" in message
    assert "removed" in message and "--sha256" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_truncated_transfer_keeps_the_part_and_resumes_with_range(server: Server, tmp_path: Path) -> None:
    payload = make_zip(tmp_path / "good.zip")
    assert len(payload) > 4 * 64 * 1024, "the fixture should span several read chunks"
    dataset = dataset_for(server, payload, size=False)  # truncation seen through Content-Length alone
    dest = tmp_path / "movielens-small"
    server.truncate_next = True
    with pytest.raises(DownloadError) as caught:
        fetch_dataset(dataset, dest, progress=False)
    half = len(payload) // 2
    assert f"closed after {half:,} of {len(payload):,} bytes" in str(caught.value)
    assert "kept" in str(caught.value) and "resumes" in str(caught.value)
    assert part_path(dest).stat().st_size == half and not dest.exists()

    result = fetch_dataset(dataset, dest, progress=False)
    assert server.ranges == [None, f"bytes={half}-"]
    assert result.resumed_from == half and result.downloaded == len(payload) - half
    assert sorted(p.name for p in dest.iterdir()) == sorted(LAYOUT)
    assert leftovers(tmp_path) == ["good.zip", "movielens-small"]


def test_a_server_that_ignores_range_sends_everything_again(server: Server, tmp_path: Path) -> None:
    payload = make_zip(tmp_path / "good.zip")
    dataset = dataset_for(server, payload)
    dest = tmp_path / "movielens-small"
    garbage = b"garbage that is not a prefix of the archive"
    part_path(dest).write_bytes(garbage)
    server.honour_range = False
    result = fetch_dataset(dataset, dest, progress=False)
    assert (
        server.ranges == [f"bytes={len(garbage)}-"] and result.resumed_from == 0 and result.downloaded == len(payload)
    )
    assert (dest / "movies.csv").is_file() and not part_path(dest).exists()


@pytest.mark.parametrize("entry", ["ml-latest-small/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt"])
def test_zip_slip_entries_are_refused_before_anything_is_extracted(server: Server, tmp_path: Path, entry: str) -> None:
    payload = make_zip(tmp_path / "slip.zip", extra={entry: b"owned"})
    dataset = dataset_for(server, payload)
    dest = tmp_path / "a" / "b" / "movielens-small"
    with pytest.raises(DownloadError, match="unsafe") as caught:
        fetch_dataset(dataset, dest, progress=False)
    assert repr(entry) in str(caught.value)
    assert not dest.exists() and leftovers(dest.parent) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_unsafe_entry_rule() -> None:
    assert not unsafe_entry("ml-latest-small/ratings.csv")
    assert not unsafe_entry("ml-latest-small/..hidden")
    assert unsafe_entry("../x") and unsafe_entry("/x") and unsafe_entry("C:/x") and unsafe_entry("a/../../x")


def test_an_archive_without_the_layout_is_refused(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("something/else.csv", "a\n")
    dataset = dataset_for(server, path.read_bytes())
    dest = tmp_path / "movielens-small"
    with pytest.raises(DownloadError, match=r"has no ml-latest-small/ratings.csv"):
        fetch_dataset(dataset, dest, progress=False)
    assert leftovers(tmp_path) == ["other.zip"]


def test_http_error_is_clear(server: Server, tmp_path: Path) -> None:
    dataset = replace(dataset_for(server, b"x"), url=server.url.replace(".zip", ".missing"))
    with pytest.raises(DownloadError, match=r"answered HTTP 404 Not Found\. Nothing was written\."):
        fetch_dataset(dataset, tmp_path / "d", progress=False)
    assert leftovers(tmp_path) == []


def test_a_non_empty_destination_is_not_touched(server: Server, tmp_path: Path) -> None:
    dataset = dataset_for(server, make_zip(tmp_path / "good.zip"))
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(DownloadError, match="exists and is not empty"):
        fetch_dataset(dataset, dest, progress=False)
    assert server.ranges == [] and leftovers(dest) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fetch_dataset(dataset, empty, progress=False).files


def test_dns_failure_says_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DownloadError) as caught:
        fetch("movielens-small", tmp_path / "ml")
    message = str(caught.value)
    assert "cannot resolve the host files.grouplens.org" in message and "offline" in message
    assert "Nothing was written" in message and leftovers(tmp_path) == []


def test_overrides_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not a sha256"):
        fetch("movielens-small", tmp_path / "ml", sha256="abc")
    with pytest.raises(DownloadError, match="Did you mean 'movielens-small'"):
        fetch("movielens-smal", tmp_path / "ml")


def test_cli_fetch_prints_where_and_the_yaml_line(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = dataset_for(server, make_zip(tmp_path / "good.zip"))
    dest = tmp_path / "ml"
    status = cli.main(
        ["data", "fetch", "movielens-small", "--dest", str(dest), "--url", server.url, "--sha256", dataset.sha256]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"extracted 5 files into {dest}" in captured.out
    assert f"data: {{type: movielens, path: {dest}, images: null}}" in captured.out
    assert "no posters" in captured.out and "Harper & Konstan 2015" in captured.out


def test_cli_unreachable_server_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*", "COLUMNS": "200"}
    url = f"http://127.0.0.1:{port}/ml-latest-small.zip"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusionrec.core.cli",
            "data",
            "fetch",
            "movielens-small",
            "--dest",
            str(tmp_path / "ml"),
            "--url",
            url,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {url}: cannot connect to 127.0.0.1:{port}: connection refused.")
    assert "Nothing was written" in result.stderr and leftovers(tmp_path) == []
