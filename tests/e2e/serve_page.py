"""`make e2e`: serve a run and drive its page in a real headless Chromium (Debian's, through Playwright).

Picks a user, checks that the posters render (non-zero natural size), clicks one to see similar items and a
session's recommendations, and saves a screenshot (docs/serving-screenshot.png). Exits non-zero on any failure.

    python tests/e2e/serve_page.py runs/quickstart --screenshot docs/serving-screenshot.png
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``fusionrec serve`` in a child process, once it answers /readyz."""
    fusionrec = Path(sys.executable).with_name("fusionrec")
    server = subprocess.Popen([str(fusionrec), "serve", str(run_dir), "--port", str(port)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"fusionrec serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("fusionrec serve did not become ready within 120 s")


def drive(base: str, screenshot: Path) -> None:
    """Pick a user, check posters, click one, check similar items, save the screenshot."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base + "/")
        page.wait_for_selector("#user-list option", state="attached", timeout=30_000)
        user = page.eval_on_selector_all("#user-list option", "options => options[1].value")
        page.fill("#user-search", user)
        page.click("#show-user")
        page.wait_for_function(
            f"document.querySelector('#recs-title').textContent.includes('user {user}')", timeout=30_000
        )
        page.wait_for_selector("#recs .card img", timeout=30_000)
        widths = wait_for_images(page, "#recs .card img")
        print(f"user {user}: {len(widths)} posters, natural widths {sorted(set(widths))}")
        assert widths and all(w > 0 for w in widths), f"posters did not render: {widths}"
        page.click("#recs .card >> nth=0")
        page.wait_for_selector("#similar .card img", timeout=30_000)
        similar = wait_for_images(page, "#similar .card img")
        assert similar and all(w > 0 for w in similar), f"similar posters did not render: {similar}"
        session = page.inner_text("#recs-title")
        assert "session" in session, session
        print(f"similar items: {len(similar)} posters; {session}")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()


def wait_for_images(page: object, selector: str) -> list[int]:
    """The natural widths of the images under ``selector`` once all of them finished loading."""
    script = f"""() => {{
        const imgs = [...document.querySelectorAll('{selector}')];
        imgs.forEach(i => i.loading = 'eager');
        return imgs.length > 0 && imgs.every(i => i.complete);
    }}"""
    page.wait_for_function(script, timeout=30_000)  # type: ignore[attr-defined]
    widths: list[int] = page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")  # type: ignore[attr-defined]
    return widths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("docs/serving-screenshot.png"))
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium (make e2e does)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    port = free_port()
    server = start_server(args.run_dir, port)
    try:
        drive(f"http://127.0.0.1:{port}", args.screenshot)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"e2e passed in {time.monotonic() - start:.1f} s; screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
