"""Seen-item exclusion on one and on two FAISS threads: the faiss retriever's per-query selector searches, spread
over a thread pool when FAISS has several threads, must return the same ids and should take less time.

    python benchmarks/retrieval_threads.py            # 50,000 × 64 synthetic items, 400 users, 100 seen each

Prints, per index, the seconds on 1 and 2 threads and whether the ids were identical (docs/benchmarks.md).
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from fusionrec.plugins.retrievers.faiss_impl import FaissRetriever


def main() -> None:
    rng = np.random.default_rng(0)
    n, users = 50_000, 400
    vectors = rng.standard_normal((n, 64)).astype(np.float32)
    queries = rng.standard_normal((users, 64)).astype(np.float32)
    seen = [rng.choice(n, 100, replace=False).astype(np.int64) for _ in range(users)]
    for index in ("HNSW32", "IVF256,Flat", "Flat"):
        retriever = FaissRetriever(index=index, metric="ip")
        retriever.build(vectors, np.arange(n, dtype=np.int64))
        seconds, ids = {}, {}
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            retriever.search(queries[:2], 10, exclude=seen[:2])  # warm-up (and the selector probe)
            started = time.perf_counter()
            ids[threads] = retriever.search(queries, 10, exclude=seen).ids
            seconds[threads] = time.perf_counter() - started
        same = np.array_equal(ids[1], ids[2])
        print(f"{index}: 1 thread {seconds[1]:.3f} s, 2 threads {seconds[2]:.3f} s, same ids: {same}")


if __name__ == "__main__":
    main()
