"""Load test of `fusionrec serve`: HTTP latency and throughput against the same two-stage call made in-process.

Starts `fusionrec serve RUN_DIR` on a free loopback port, then for each concurrency level (default 1, 8, 32
clients; each a thread with its own keep-alive httpx client) sends the three recommendation calls in turn for
``--seconds`` (known user, session history, similar items), and reports throughput, p50/p95/p99 and errors. Then
the same load at 8 clients while POST /admin/reload swaps the run every 2 s (errors must be 0). The in-process
figures are the same calls through ``Run`` (the API the server stands on), one at a time, in this process, while
the server is idle, first with torch's default threads, then with the server's ``--threads``. Stops by itself;
the load average is printed with every level.

    python benchmarks/serve_load.py runs/quickstart --seconds 20 --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from fusionrec.core.api import Run
from fusionrec.core.serve.server import set_threads

TOKEN = "bench"
CALLS = ("user", "session", "similar")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(run_dir: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("fusionrec")
    cmd = [str(exe), "serve", str(run_dir), "--port", str(port), "--admin-token", TOKEN, "--threads", str(threads)]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


class Workload:
    """Random but seeded requests over the run's users and items."""

    def __init__(self, run: Run, seed: int = 0) -> None:
        self.users = [str(u) for u in run.recommender.data.user_ids]
        self.items = [str(i) for i in run.recommender.data.item_ids]
        self.rng = random.Random(seed)

    def request(self, call: str) -> tuple[str, str, Any]:
        rng = self.rng
        if call == "user":
            return "GET", f"/v1/users/{rng.choice(self.users)}/recommendations?k=10", None
        if call == "session":
            return "POST", "/v1/recommendations", {"history": rng.sample(self.items, 5), "k": 10}
        return "GET", f"/v1/items/{rng.choice(self.items)}/similar?k=10", None


def in_process(run: Run, work: Workload, seconds: float) -> dict[str, list[float]]:
    """Latencies (s) of the three calls through the Python API, one at a time."""
    calls: dict[str, Callable[[], object]] = {
        "user": lambda: run.recommend([work.rng.choice(work.users)], 10),
        "session": lambda: run.recommend_history(work.rng.sample(work.items, 5), 10),
        "similar": lambda: run.similar(work.rng.choice(work.items), 10),
    }
    out: dict[str, list[float]] = {}
    for name, call in calls.items():
        times, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        out[name] = times
    return out


def load(base: str, work: Workload, clients: int, seconds: float, reload_every: float = 0.0) -> dict[str, Any]:
    """``clients`` threads sending the three calls in turn for ``seconds``; optionally reloading meanwhile."""
    latencies: dict[str, list[float]] = {c: [] for c in CALLS}
    errors: list[str] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            turn = index
            while time.monotonic() < end:
                call = CALLS[turn % 3]
                turn += 1
                with lock:
                    method, path, body = work.request(call)
                t = time.perf_counter()
                try:
                    r = http.request(method, path, json=body)
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                elapsed = time.perf_counter() - t
                with lock:
                    latencies[call].append(elapsed) if ok else errors.append(why)

    reloads: list[int] = []

    def reloader() -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            while time.monotonic() + reload_every < end:
                time.sleep(reload_every)
                r = http.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
                reloads.append(r.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    if reload_every:
        threads.append(threading.Thread(target=reloader))
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    total = sum(len(v) for v in latencies.values())
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": total,
        "throughput": round(total / wall, 1),
        "errors": len(errors),
        "error_examples": errors[:3],
        "reloads": reloads,
        "latency_ms": {c: percentiles(v) for c, v in latencies.items()},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {"n": len(values), **{f"p{q}": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    run = Run.open(args.run_dir)
    work = Workload(run)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(args.run_dir, port, args.threads)
    results: dict[str, Any] = {
        "run": str(args.run_dir),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "server_threads": args.threads,
        "levels": [],
    }
    try:
        load(base, work, 2, 3.0)  # warm-up
        for clients in [int(c) for c in args.levels.split(",")]:
            level = load(base, work, clients, args.seconds)
            results["levels"].append(level)
            print(json.dumps(level), flush=True)
        results["reload"] = load(base, work, 8, args.seconds, reload_every=2.0)
        print("reload under load:", json.dumps(results["reload"]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    import torch

    default_threads = torch.get_num_threads()
    inproc = in_process(run, work, min(args.seconds, 5.0))  # torch's default threads, as a notebook would
    results[f"in_process_ms_threads_{default_threads}"] = {c: percentiles(v) for c, v in inproc.items()}
    set_threads(args.threads)  # what the server runs with: the ratio compares like with like
    inproc = in_process(run, work, min(args.seconds, 5.0))
    results["in_process_ms"] = {c: percentiles(v) for c, v in inproc.items()}
    print(f"in process, {default_threads} threads:", json.dumps(results[f"in_process_ms_threads_{default_threads}"]))
    one = results["levels"][0]["latency_ms"]
    results["http_over_in_process_p50"] = {
        c: {"ratio": round(one[c]["p50"] / results["in_process_ms"][c]["p50"], 2),
            "added_ms": round(one[c]["p50"] - results["in_process_ms"][c]["p50"], 2)}
        for c in CALLS if one[c].get("n")
    }  # fmt: skip
    print(f"in process, {args.threads} thread(s):", json.dumps(results["in_process_ms"]))
    print("HTTP (1 client) over in-process, p50:", json.dumps(results["http_over_in_process_p50"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
