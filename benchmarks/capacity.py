"""A capacity model for distributed two-tower training, from figures measured on this machine.

    python benchmarks/capacity.py [--out docs/benchmarks] [--quick]

Measures, through the real :class:`~fusionrec.core.engine.trainer.Trainer` step (objective, backward, AdamW):

1. per-step time and per-example cost of the towers (quickstart-like: a 384-d frozen text modality through the
   attention fuser + item ids, ``transformer`` user tower over 50 items) at a few batch sizes and dims;
2. how the step time grows with the catalogue (ids only, ``mean`` tower): the item-id embedding's dense AdamW update
   and the per-step id map are proportional to the number of items, on every rank;
3. full-ranking scoring throughput (user × item inner products per second, what validation costs);
4. the tensors' bytes (parameters, gradients, AdamW state, feature buffers) and the process's peak RSS.

Then extrapolates to 1M / 10M / 100M items and 10M users (memory per rank, index size from
docs/benchmarks/retrieval.json, epoch time, the first wall) and writes ``capacity.json`` and ``capacity.md``.
Every figure says whether it was measured or extrapolated, and from what.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionrec.core.assembly.config import TrainConfig
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.trainer import Trainer
from fusionrec.core.engine.two_tower import Histories, ItemTower, TwoTower
from fusionrec.core.io import atomic_write_text
from fusionrec.registry import get_registry

USERS = 10_000_000
PER_USER = 20
"""Assumed training interactions per user (200M for 10M users): a stated assumption, not a measurement."""
CATALOGUES = (1_000_000, 10_000_000, 100_000_000)
FEATURE_DIMS = {"image (EfficientNet-Lite0)": 1280, "text (all-MiniLM-L6-v2)": 384}
"""The quickstart's frozen modalities: their vectors are buffers held whole by every rank."""
CORES = 2
"""Cores of one rank in the extrapolation: this machine's."""
WALLS = {"this CPU machine (24 GiB)": 24 * 2**30, "one H100 (80 GB)": 80 * 10**9}


def trainer_for(n_items: int, dim: int, batch: int, *, tower: str, text_dim: int) -> Trainer:
    """A Trainer over synthetic histories (2,000 users × 20 items) and a random frozen text modality."""
    registry = get_registry()
    rng = np.random.default_rng(0)
    users, length = 2_000, 20
    items = torch.from_numpy(rng.integers(0, n_items, users * length))
    history = Histories(items, torch.arange(0, users * length + 1, length))
    features: dict[str, Any] = {}
    fuser = None
    if text_dim:
        vectors = rng.standard_normal((n_items, text_dim), dtype=np.float32)
        features = {"text": (vectors, np.ones(n_items, dtype=bool))}
        fuser = registry.build(registry.spec("fuser", {"type": "attention", "dim": dim}), input_dims={"text": text_dim})
    user_spec = registry.spec("user_tower", {"type": tower, "max_history": 50})
    item = ItemTower(features, fuser, n_items, dim, True)
    model = TwoTower(item, registry.build(user_spec, item_dim=item.dim, n_users=users), normalize=True)
    config = TrainConfig(batch_size=batch, dim=dim, device="cpu", seed=0)
    return Trainer(model, history, config, RunDir(Path("unused"), {}), None)


def time_steps(trainer: Trainer, steps: int) -> float:
    """Median CPU seconds (all threads) of one optimisation step (objective, backward, AdamW), after one warm-up
    step. CPU time rather than wall time: the machine is shared, and CPU time is what other users' load changes
    least."""
    generator = torch.Generator().manual_seed(0)
    examples = trainer.examples()
    size = trainer.batch_size()
    seconds = []
    trainer.model.train()
    for step in range(steps + 1):
        positions = examples[torch.randint(0, len(examples), (size,), generator=generator)]
        started = time.process_time()
        _, differentiated = trainer.objective(positions, generator)
        trainer.optimizer.zero_grad(set_to_none=True)
        differentiated.backward()  # type: ignore[no-untyped-call]
        trainer.optimizer.step()
        if step:
            seconds.append(time.process_time() - started)
    return float(np.median(seconds))


def tensor_bytes(trainer: Trainer) -> dict[str, int]:
    """Bytes of the model's parameters, their gradients, AdamW's state and the buffers (feature matrices)."""
    params = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)
    state = sum(
        t.numel() * t.element_size() for s in trainer.optimizer.state.values() for t in s.values() if t.dim() > 0
    )
    buffers = sum(b.numel() * b.element_size() for b in trainer.model.buffers())
    return {"parameters": params, "gradients": params, "adamw_state": state, "buffers": buffers}


def measure(quick: bool) -> dict[str, Any]:
    steps = 2 if quick else 3
    towers = []
    for dim, batch in ((64, 256), (64, 1024), (128, 1024)):
        trainer = trainer_for(10_000, dim, batch, tower="transformer", text_dim=384)
        step = time_steps(trainer, steps)
        towers.append({"dim": dim, "batch": batch, "items": 10_000, "step_s": step, "per_example_s": step / batch,
                       "bytes": tensor_bytes(trainer), "user_tower_parameters":
                       sum(p.numel() for p in trainer.model.user.parameters())})  # fmt: skip
        print(f"towers d={dim} batch={batch}: {step * 1e3:.1f} CPU ms/step, {step / batch * 1e6:.1f} µs/example")
    catalogue = []
    for n_items in (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000):
        trainer = trainer_for(n_items, 64, 1024, tower="mean", text_dim=0)
        step = time_steps(trainer, steps)
        catalogue.append({"items": n_items, "dim": 64, "batch": 1024, "step_s": step, "bytes": tensor_bytes(trainer)})
        print(f"ids only, {n_items:,} items: {step * 1e3:.1f} CPU ms/step")
    slope, intercept = np.polyfit([c["items"] for c in catalogue], [c["step_s"] for c in catalogue], 1)
    users, items = torch.randn(1024, 64), torch.randn(100_000, 64)
    started = time.process_time()
    for _ in range(3):
        torch.topk(users @ items.T, 20, dim=1)
    scoring = 3 * 1024 * 100_000 / (time.process_time() - started)
    print(f"full ranking: {scoring:.3g} user×item scores (with top-20) per CPU second")
    return {
        "towers": towers,
        "catalogue": catalogue,
        "catalogue_fit": {"seconds_per_item_per_step": float(slope), "intercept_s": float(intercept)},
        "scores_per_second": scoring,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_average_1min": os.getloadavg()[0],
    }


def index_bytes_per_item(path: Path) -> dict[str, Any]:
    """Serialized bytes per item of each index at the largest catalogue in the retrieval benchmark."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    largest = max(data["datasets"], key=lambda d: d["n"])
    sizes = {r["index"]: r["serialized_bytes"] / largest["n"] for r in largest["results"] if r.get("serialized_bytes")}
    return {"dataset": largest["name"], "dim": largest["dim"], "date": data["machine"]["date"], "per_item": sizes}


def model(measured: dict[str, Any], indexes: dict[str, Any], dim: int = 64) -> list[dict[str, Any]]:
    """The capacity table: one row per catalogue size (10M users, PER_USER interactions each)."""
    interactions = USERS * PER_USER
    tower = next(t for t in measured["towers"] if t["dim"] == dim and t["batch"] == 1024)
    per_example, batch = tower["per_example_s"], tower["batch"]
    slope = measured["catalogue_fit"]["seconds_per_item_per_step"]
    user_tower_bytes = tower["user_tower_parameters"] * 16
    rows = []
    for n in CATALOGUES:
        ids = n * dim * 16  # parameter, gradient, AdamW's two moments, float32
        features = n * sum(FEATURE_DIMS.values()) * 4
        histories = interactions * 24  # items, user of each, example positions: int64 each
        per_rank = ids + features + histories + user_tower_bytes + n * 8  # + the per-step id map
        steps = interactions / batch
        # CPU seconds over CORES cores per rank, perfect scaling assumed; the catalogue term does not shrink with ranks
        epoch = {r: (interactions * per_example / r + steps * slope * n) / CORES for r in (1, 8, 64)}
        validation = USERS * n / measured["scores_per_second"] / CORES
        walls = [name for name, limit in WALLS.items() if per_rank > limit]
        if not walls and per_rank > WALLS["this CPU machine (24 GiB)"] * 0.5:
            walls = ["half of this machine's memory"]
        rows.append({
            "items": n, "users": USERS, "interactions": interactions, "dim": dim,
            "memory_per_rank_bytes": {"id_embedding_with_adamw": ids, "frozen_features": features,
                                      "histories": histories, "total": per_rank},
            "item_vectors_bytes": n * dim * 4, "user_vectors_bytes": USERS * dim * 4,
            "index_bytes": {k: v * n for k, v in indexes.get("per_item", {}).items()},
            "epoch_seconds": epoch, "validation_seconds_one_rank": validation,
            "over_memory": walls,
        })  # fmt: skip
    return rows


def gib(value: float) -> str:
    return f"{value / 2**30:,.1f} GiB" if value >= 2**30 else f"{value / 2**20:,.0f} MiB"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds / 60:,.1f} min"


def markdown(measured: dict[str, Any], rows: list[dict[str, Any]], indexes: dict[str, Any], when: str) -> str:
    lines = [f"Measured {when} on {platform.processor() or platform.machine()}, 2 cores shared with other work "
             f"(1-min load average {measured['load_average_1min']:.1f}), torch {torch.__version__}, 1 process "
             "(`python benchmarks/capacity.py`); times are CPU seconds of all threads, median of the steps.", "",
             "| measured | dim | batch | items | CPU ms / step | CPU µs / example |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for t in measured["towers"]:
        lines.append(f"| towers (attention fuser, transformer) | {t['dim']} | {t['batch']} | {t['items']:,} | "
                     f"{t['step_s'] * 1e3:.0f} | {t['per_example_s'] * 1e6:.0f} |")  # fmt: skip
    for c in measured["catalogue"]:
        lines.append(f"| ids only, mean tower | {c['dim']} | {c['batch']} | {c['items']:,} | {c['step_s'] * 1e3:.0f} | "
                     f"{c['step_s'] / c['batch'] * 1e6:.0f} |")  # fmt: skip
    fit = measured["catalogue_fit"]
    lines += ["", f"Per-step cost that grows with the catalogue (fitted on the ids-only rows): "
              f"{fit['seconds_per_item_per_step'] * 1e9:.1f} CPU ns per item per step, on every rank. Full ranking: "
              f"{measured['scores_per_second']:.3g} user×item scores per CPU second.", "",
              f"Extrapolated (dim {rows[0]['dim']}, 10M users × {PER_USER} interactions = "
              f"{rows[0]['interactions']:,} per epoch, assumed):", "",
              "| items | memory per rank | of which ids+AdamW / frozen features | index (Flat / HNSW32 / IVF-PQ32) "
              "| epoch on 1 / 8 / 64 ranks of 2 such cores | full validation, rank 0 | first wall |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        mem = r["memory_per_rank_bytes"]
        idx = r["index_bytes"]
        pick = [next((v for k, v in idx.items() if k.startswith(p)), None) for p in ("Flat", "HNSW32", "IVF4096,PQ")]
        index = " / ".join(gib(v) if v else "-" for v in pick)
        epoch = " / ".join(hours(r["epoch_seconds"][k]) for k in (1, 8, 64))
        wall = ("memory: over " + ", ".join(r["over_memory"])) if r["over_memory"] else "epoch time (CPU)"
        lines.append(f"| {r['items']:,} | {gib(mem['total'])} | {gib(mem['id_embedding_with_adamw'])} / "
                     f"{gib(mem['frozen_features'])} | {index} | {epoch} | {hours(r['validation_seconds_one_rank'])} "
                     f"| {wall} |")  # fmt: skip
    if indexes:
        lines += ["", f"Index sizes: bytes per item measured at {indexes['dataset']} (dim {indexes['dim']}, "
                  f"{indexes['date']}, docs/benchmarks/retrieval.json), times the number of items."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--quick", action="store_true", help="fewer steps and catalogue sizes (a smoke test)")
    parser.add_argument("--from-json", type=Path, help="re-derive the model from an earlier capacity.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.from_json is not None:
        earlier = json.loads(args.from_json.read_text())
        when, measured = earlier["date"], earlier["measured"]
    else:
        when, measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), measure(args.quick)
    indexes = index_bytes_per_item(Path("docs/benchmarks/retrieval.json"))
    rows = model(measured, indexes)
    result = {"benchmark": "capacity", "date": when, "threads": torch.get_num_threads(), "measured": measured,
              "indexes": indexes, "assumptions": {"users": USERS, "interactions_per_user": PER_USER,
              "feature_dims": FEATURE_DIMS}, "extrapolated": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "capacity.json", json.dumps(result, indent=1) + "\n")
    text = markdown(measured, rows, indexes, when)
    atomic_write_text(args.out / "capacity.md", text)
    print(text)


if __name__ == "__main__":
    main()
