"""Peers in the same run: RecBole and Cornac models on fusionrec's split, scored by fusionrec's metric code.

One command (in fusionrec's venv, after ``benchmarks/peers/setup.sh`` has made the peers' venvs):

    .venv/bin/python benchmarks/peers/run.py --pipeline examples/movielens-small.yaml --out benchmarks/results/peers
    .venv/bin/python benchmarks/peers/run.py --quick     # examples/quickstart.yaml, 1 setting, 1-2 epochs
    .venv/bin/python benchmarks/peers/run.py --pipeline P.yaml --models recbole:SASRec --wide   # WIDE_GRIDS

What it does:

1. loads the pipeline's data, runs its split and exports it (``train.csv``, ``valid.csv``, ``test.csv`` in
   original ids, as ``fusionrec data split`` does) into ``OUT/split``, then checks the files against the split;
2. exports the image features from fusionrec's feature cache (``OUT/image.npz``, export_features.py) for VBPR;
3. for each peer model and each setting of its small grid, runs the adapter in the peer's venv (trained on train,
   lists for the validation users, train items masked) and scores the list on validation with
   :func:`fusionrec.core.engine.evaluation.evaluate` (score.py); keeps the setting with the best validation Recall@20;
4. retrains that setting on train + valid, lists for the test users (train and valid items masked), scores test;
5. writes ``peers.json`` (every run: settings, metrics, 95% bootstrap intervals, protocol, seconds) and
   ``peers.md`` (the table) into ``--out``.

A run whose list and log are already in ``--out`` (same command line) is reused, not rerun, so an interrupted
comparison continues where it stopped; ``--models`` reruns some models and keeps the other rows of ``peers.json``.

Test never chooses anything. Lists are top 50; metrics Recall@20 and NDCG@20 (full ranking over the catalogue).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import score as scoring  # noqa: E402

K = 50
SECONDS = "# seconds: "
"""A finished run's log ends with this line (then its wall time), which a rerun reads when it reuses the run."""
SELECT = "recall@20"

# (library, model) → grid of settings; "epochs" is the training length, the rest the library's parameters.
GRIDS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("recbole", "BPR"): [
        {"epochs": 30, "embedding_size": 64, "learning_rate": 1e-3},
        {"epochs": 30, "embedding_size": 64, "learning_rate": 5e-3},
    ],
    ("recbole", "LightGCN"): [
        {"epochs": 30, "embedding_size": 64, "n_layers": 2, "learning_rate": 1e-3},
        {"epochs": 30, "embedding_size": 64, "n_layers": 3, "learning_rate": 5e-3},
    ],
    ("recbole", "MultiVAE"): [
        {"epochs": 50, "latent_dimension": 128, "learning_rate": 1e-3},
        {"epochs": 50, "latent_dimension": 64, "learning_rate": 1e-3, "dropout_prob": 0.3},
    ],
    # one setting (RecBole's SASRec defaults, 64-d, 50 items of history): an epoch trains on every prefix of every
    # sequence with a full softmax and took 5-7 minutes on one shared core, so a grid did not fit in the session
    ("recbole", "SASRec"): [
        {"epochs": 10, "hidden_size": 64, "learning_rate": 1e-3, "MAX_ITEM_LIST_LENGTH": 50},
    ],
    ("cornac", "BPR"): [
        {"epochs": 200, "k": 64, "learning_rate": 0.01, "lambda_reg": 0.01},
        {"epochs": 200, "k": 64, "learning_rate": 0.05, "lambda_reg": 0.001},
    ],
    # batch 1024: at batch 256 Cornac's VBPR took minutes per epoch on movielens-small (7 s at 1024)
    ("cornac", "VBPR"): [
        {"epochs": 10, "k": 32, "k2": 32, "learning_rate": 0.005, "lambda_w": 0.01, "batch_size": 1024},
        {"epochs": 30, "k": 32, "k2": 32, "learning_rate": 0.001, "lambda_w": 0.01, "batch_size": 1024},
    ],
}
# --wide: grids that fit where an epoch takes seconds (the sparse benchmark, benchmarks/sparse.py: 6,710 interactions,
# a RecBole SASRec epoch in about 2 s), each a superset of the small grid; selection on validation as always
WIDE_GRIDS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("recbole", "SASRec"): [
        {"epochs": epochs, "hidden_size": 64, "learning_rate": lr, "MAX_ITEM_LIST_LENGTH": 50}
        for epochs, lr in ((10, 1e-3), (50, 1e-3), (50, 3e-3), (100, 1e-3))
    ],
}
QUICK_EPOCHS = {"SASRec": 1, "VBPR": 1, "BPR": 2, "LightGCN": 2, "MultiVAE": 2}
ADAPTERS = {"recbole": HERE / "recbole_adapter.py", "cornac": HERE / "cornac_adapter.py"}


def _peer_run(
    library: str, model: str, setting: dict[str, Any], phase: str, split: Path, out: Path, args: argparse.Namespace
) -> tuple[Path, dict[str, Any], float]:
    python = args.venvs / library / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python}: missing; run benchmarks/peers/setup.sh first")
    params = {k: v for k, v in setting.items() if k != "epochs"}
    tag = "-".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"
    recs = out / "recs" / f"{library}-{model}-{phase}-e{setting['epochs']}-{tag}.csv"
    cmd = [str(python), str(ADAPTERS[library]), "--split", str(split), "--phase", phase, "--model", model]
    cmd += ["--params", json.dumps(params), "--epochs", str(setting["epochs"]), "--seed", str(args.seed)]
    cmd += ["-k", str(K), "--out", str(recs)]
    if library == "cornac" and model == "VBPR":
        cmd += ["--features", str(out / "image.npz")]
    log = out / "logs" / f"{recs.stem}.log"
    if recs.exists() and log.exists() and log.read_text().split("\n", 1)[0] == " ".join(cmd):
        # this exact run finished before (its list and its log are written only once it succeeded): reuse it
        text = log.read_text()
        summary = json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
        took = [line for line in text.splitlines() if line.startswith(SECONDS)]
        seconds = float(took[-1][len(SECONDS) :]) if took else float(summary.get("fit_seconds", 0.0))
        print(f"{library} {model} {phase} {setting}: reusing {recs.name}", flush=True)
        return recs, summary, seconds
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": str(args.threads)}
    env["MKL_NUM_THREADS"] = env["OMP_NUM_THREADS"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    trailer = f"\n{SECONDS}{seconds:.1f}\n" if done.returncode == 0 else ""
    log.write_text(" ".join(cmd) + "\n\n" + done.stdout + "\n" + done.stderr + trailer)
    if done.returncode != 0:
        raise RuntimeError(f"{library} {model} {phase} failed (exit {done.returncode}); see {log}")
    summary = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return recs, summary, seconds


def _fmt(result: dict[str, Any], name: str) -> str:
    low, high = result["ci"][name]
    return f"{result['metrics'][name]:.4f} [{low:.4f}, {high:.4f}]"


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | library | chosen setting | valid R@20 | valid N@20 | test R@20 (95% CI) | test N@20 (95% CI) | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['library']} | failed: {row['error']} | | | | | |")
            continue
        setting = ", ".join(f"{k} {v}" for k, v in row["chosen"].items())
        valid, test = row["valid"], row["test"]
        lines.append(
            f"| {row['model']} | {row['library']} {row['version']} | {setting} | {valid['metrics']['recall@20']:.4f} | "
            f"{valid['metrics']['ndcg@20']:.4f} | {_fmt(test, 'recall@20')} | {_fmt(test, 'ndcg@20')} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _version(venvs: Path, library: str) -> str:
    python = venvs / library / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{library}'))"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, default=REPO / "examples" / "movielens-small.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peers")
    parser.add_argument("--quick", action="store_true", help="quickstart data, first setting only, 1-2 epochs")
    parser.add_argument("--models", help="comma-separated library:model (e.g. recbole:BPR,cornac:VBPR); default all")
    parser.add_argument("--venvs", type=Path, default=HERE / ".venvs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of each peer process")
    parser.add_argument("--wide", action="store_true", help="WIDE_GRIDS where a model has one (small data only)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pipeline = REPO / "examples" / "quickstart.yaml"
        if args.out == parser.get_default("out"):
            args.out = REPO / "benchmarks" / "results" / "peers-quick"
    out: Path = args.out.resolve()
    wanted = list(GRIDS)
    if args.models:
        names = {tuple(name.split(":", 1)) for name in args.models.split(",")}
        unknown = names - set(GRIDS)
        if unknown:
            raise SystemExit(f"unknown model(s) {sorted(unknown)}; available: {[':'.join(m) for m in GRIDS]}")
        wanted = [m for m in GRIDS if m in names]

    from fusionrec.core.assembly import loading
    from fusionrec.core.io import atomic_write_text
    from fusionrec.registry import get_registry

    start = time.perf_counter()
    loaded = loading.load(args.pipeline, get_registry())
    split = loading.run_split(loaded)
    split_dir = out / "split"
    manifest = loading.write_split(loaded, split, split_dir, args.pipeline)
    counts = scoring.compare_parts(split_dir, scoring.expected_parts(loaded.data, split))
    print(f"split → {split_dir}: {counts}", flush=True)
    if any(lib == "cornac" and model == "VBPR" for lib, model in wanted):
        sys.path.insert(0, str(HERE))
        from export_features import export

        print(f"features → {json.dumps(export(args.pipeline, out / 'image.npz'))}", flush=True)
    assert loaded.spec.data is not None
    spec = loading.split_spec(loaded.dataset, loaded.spec)
    protocol = {"dataset": loaded.spec.data.type, "split": spec.to_dict() if spec is not None else None}
    data = loaded.data

    def evaluate(recs_path: Path, part: str) -> dict[str, Any]:
        recs = scoring.read_recs(recs_path, data.user_ids, data.item_ids)
        return scoring.score_recs(
            recs, split, part, data.n_items, bootstrap=args.bootstrap, seed=args.seed, protocol=protocol
        )

    versions = {lib: _version(args.venvs, lib) for lib in {lib for lib, _ in wanted}}
    rows: list[dict[str, Any]] = []
    for library, model in wanted:
        grid = WIDE_GRIDS.get((library, model), GRIDS[(library, model)]) if args.wide else GRIDS[(library, model)]
        if args.quick:
            grid = [{**grid[0], "epochs": QUICK_EPOCHS[model]}]
        row: dict[str, Any] = {"library": library, "version": versions[library], "model": model, "tried": []}
        seconds = 0.0
        try:
            for setting in grid:
                recs, summary, took = _peer_run(library, model, setting, "valid", split_dir, out, args)
                seconds += took
                result = evaluate(recs, "valid")
                row["tried"].append({"setting": setting, "valid": result, "run": summary, "seconds": round(took, 1)})
                print(f"{library} {model} {setting}: valid {SELECT} {result['metrics'][SELECT]:.4f} ({took:.0f} s)")
            best = max(row["tried"], key=lambda t: t["valid"]["metrics"][SELECT])
            row["chosen"], row["valid"] = best["setting"], best["valid"]
            recs, summary, took = _peer_run(library, model, row["chosen"], "test", split_dir, out, args)
            seconds += took
            row["test"], row["test_run"] = evaluate(recs, "test"), summary
            row["test_recs"] = str(recs.relative_to(out))
            print(f"{library} {model} chosen {row['chosen']}: test {_fmt(row['test'], SELECT)} ({took:.0f} s)")
        except (RuntimeError, SystemExit) as error:
            row["error"] = str(error)
            print(f"{library} {model}: {error}", file=sys.stderr)
        row["seconds"] = round(seconds, 1)
        rows.append(row)

    kept: list[str] = []
    previous = out / "peers.json"
    if args.models and previous.exists():
        # a partial rerun (--models) keeps the other models' rows of the earlier full or partial run in --out
        earlier = json.loads(previous.read_text())
        if earlier.get("pipeline") == str(args.pipeline) and bool(earlier.get("quick")) == args.quick:
            done = {(row["library"], row["model"]) for row in rows}
            old_rows = [row for row in earlier["rows"] if (row["library"], row["model"]) not in done]
            kept = [f"{row['library']}:{row['model']}" for row in old_rows]
            order = {name: i for i, name in enumerate(GRIDS)}
            rows = sorted(old_rows + rows, key=lambda row: order.get((row["library"], row["model"]), len(order)))
    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "kept_from_earlier_run": kept,
        "pipeline": str(args.pipeline),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, python "
        f"{platform.python_version()} (fusionrec), peers in their own venvs (CPU torch)",
        "quick": args.quick,
        "wide": args.wide,
        "k": K,
        "select": f"valid {SELECT}",
        "split": {"counts": manifest["counts"], "spec": manifest["split"], "checked_rows": counts},
        "protocol": (
            "full ranking over the catalogue with fusionrec's evaluate(): valid lists from models trained on train, "
            "train items masked; test lists from models retrained on train+valid with the setting chosen on valid "
            "Recall@20, train and valid items masked; top 50 lists, Recall@20 and NDCG@20, 95% percentile "
            "bootstrap over users (1000 resamples, seed 0); peers rank only items seen in their training data"
        ),
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "peers.json", json.dumps(payload, indent=2) + "\n")
    table = _table(rows)
    atomic_write_text(
        out / "peers.md",
        f"# Peers ({'quick, ' if args.quick else ''}{Path(args.pipeline).name})\n\n"
        f"Command: `{payload['command']}`. Date {payload['date']}; machine: {payload['machine']}.\n\n"
        + (f"Rows kept from the earlier run in this folder: {', '.join(kept)}.\n\n" if kept else "")
        + f"Protocol: {payload['protocol']}.\n\n{table}",
    )
    print(table)
    print(f"wrote {out / 'peers.json'}, {out / 'peers.md'} in {payload['seconds']:.0f} s")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
