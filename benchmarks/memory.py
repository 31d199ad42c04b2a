"""Peak resident memory as the catalogue grows: the feature store's write and read paths and the index build.

Each measurement runs in a fresh Python process (``--one``) so no peak is inherited from another. Just before
the step the process's peak resident size is reset to its current size (Linux: ``/proc/self/clear_refs``), and
after it the peak (``VmHWM``) is read:

- ``store-write``: ``n`` synthetic 64-d float32 vectors and their 32-byte content keys, made in memory (as the
  feature engine holds a catalogue's vectors), written through :class:`FeatureStore.write` (a new generation,
  renamed into place, then read back);
- ``store-read``: opening that store as the feature engine does on a cached run: :meth:`FeatureStore.load` (keys
  read, vectors memory-mapped) and :meth:`StoreContents.rows_of` for every item's key (the catalogue's keys are
  made before the measurement), without reading the vectors;
- ``store-scan``: the same, then every vector read once in blocks of 65,536 rows (a sum), as a consumer of the
  memory-mapped matrix does; file-backed pages count in the resident set while they are mapped;
- ``index-build``: the same vectors (made in memory first) built into fusionrec's ``faiss`` retriever, ``Flat``
  and ``IVF256,Flat`` (trained on its default sample of at most 100,000 vectors).

``step`` is that peak minus the resident size just before the step (the data already in memory); bytes/item is
the growth of ``step`` from one size to the next divided by the growth in items, the constant of a linear law.

    .venv/bin/python benchmarks/memory.py [--sizes 10000,100000,1000000] [--out benchmarks/results/memory.json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DIM = 64
STEPS = ("store-write", "store-read", "store-scan", "index-build:Flat", "index-build:IVF256,Flat")
BLOCK = 65_536


def status_bytes(field: str) -> int | None:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_measuring() -> int:
    """Reset the peak resident size to the current one (Linux ``clear_refs`` 5) and return the current size.

    Without the reset, a peak reached earlier (importing libraries, making the data) would hide the step's own.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return status_bytes("VmRSS") or peak_bytes()


def peak_bytes() -> int:
    """The peak resident size since :func:`start_measuring` (``VmHWM``; ``ru_maxrss``, the lifetime peak, off Linux)."""
    return status_bytes("VmHWM") or int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def vectors(n: int, seed: int = 0) -> Any:
    """``n`` × 64 float32 vectors, made block by block (no float64 temporary)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, BLOCK):
        out[start : start + BLOCK] = rng.random((min(BLOCK, n - start), DIM), dtype=np.float32)
    return out


def keys(n: int) -> Any:
    """``n`` distinct 32-hex-digit content keys (``S32``), made without Python strings."""
    import numpy as np

    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    table = np.full((n, 32), ord("0"), dtype=np.uint8)
    rows = np.arange(n, dtype=np.int64)
    for place in range(16):
        table[:, 31 - place] = digits[(rows >> (4 * place)) & 15]
    return table.view("S32").reshape(n)


def one(step: str, n: int, folder: Path) -> dict[str, Any]:
    """Run one step in this process and return its peaks."""
    import numpy as np

    from fusionrec.core.engine.feature_cache import FeatureStore

    store = FeatureStore(folder, "image", f"memory-benchmark-{n}")
    if step == "store-write":
        data, content = vectors(n), keys(n)
        before = start_measuring()
        store.write([(content, data)], DIM, {"encoder": "memory-benchmark"})
    elif step in ("store-read", "store-scan"):
        catalogue = keys(n)[::-1].copy()  # the items' content keys, as the engine computes them (not measured)
        before = start_measuring()
        contents = store.load()
        assert contents is not None and len(contents.keys) == n, "run store-write first"
        rows = contents.rows_of(catalogue)  # what the engine looks up on a cached run
        assert (rows >= 0).all()
        if step == "store-scan":
            total = 0.0
            for start in range(0, n, BLOCK):
                total += float(np.asarray(contents.vectors[start : start + BLOCK]).sum())
    else:
        from fusionrec.registry import get_registry

        factory = step.split(":", 1)[1]
        retriever = get_registry().create("retriever", "faiss", index=factory, device="cpu", threads=1)
        data, ids = vectors(n), np.arange(n, dtype=np.int64)
        before = start_measuring()
        retriever.build(data, ids)
    after = peak_bytes()
    return {
        "step": step,
        "n": n,
        "resident_before_bytes": before,
        "peak_after_bytes": after,
        "step_bytes": after - before,
    }


def run_child(step: str, n: int, folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--one", step, "--n", str(n), "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{step} at {n:,} items failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bytes per item between consecutive sizes of each step."""
    out = []
    for step in STEPS:
        mine = sorted((r for r in rows if r["step"] == step), key=lambda r: r["n"])
        for small, large in itertools.pairwise(mine):
            per_item = (large["step_bytes"] - small["step_bytes"]) / (large["n"] - small["n"])
            out.append({"step": step, "from": small["n"], "to": large["n"], "bytes_per_item": round(per_item, 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "memory.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.n, args.folder)))
        return 0

    sizes = [int(x) for x in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="fusionrec-memory-"))
    rows, load = [], [os.getloadavg()[0]]
    try:
        for n in sizes:
            for step in STEPS:
                row = run_child(step, n, scratch / str(n))
                rows.append(row)
                print(
                    f"{n:>9,} items  {step:<24} step {row['step_bytes'] / 2**20:8.1f} MiB  "
                    f"({row['step_bytes'] / n:6.1f} B/item; peak {row['peak_after_bytes'] / 2**20:7.1f} MiB)",
                    flush=True,
                )
            load.append(os.getloadavg()[0])
            shutil.rmtree(scratch / str(n), ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "memory",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python benchmarks/memory.py", *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "dim": DIM,
        "load_average_1min": [round(x, 2) for x in load],
        "rows": rows,
        "growth": growth(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| step | " + " | ".join(f"{n:,} items" for n in sizes) + " | bytes/item (growth) |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for step in STEPS:
        cells = [f"{r['step_bytes'] / 2**20:,.1f} MiB" for r in rows if r["step"] == step]
        per = [g for g in result["growth"] if g["step"] == step]
        print(f"| {step} | " + " | ".join(cells) + " | " + ", ".join(f"{g['bytes_per_item']:,.0f}" for g in per) + " |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
