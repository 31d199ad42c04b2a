"""``fusionrec bench retrieval``: FAISS indexes through fusionrec's ``faiss`` retriever, against raw FAISS.

For each data set (synthetic clustered vectors of the ``--sizes``, and real item vectors from a ``.npy`` file) and
each index (a FAISS index_factory string, passed verbatim, with search parameters such as ``efSearch=64``):

- **build**: seconds of :meth:`Retriever.build` (train + add), the serialized index size
  (``faiss.serialize_index``) and how much the process's resident memory grew;
- **recall@10** against exact search (a raw FAISS ``IndexFlat`` over the same vectors);
- **QPS** at batch 1 (single queries, one call each) and at batch 1024 (one call), for the retriever (its checked
  ``search`` and the engine's ``search_prepared``, which skips the input checks and copies) and for raw
  FAISS on the very index object the retriever searches, with the same queries in the same process. Repetitions
  alternate (raw, wrapper, then wrapper, raw, …) and medians count; wrapper QPS / raw QPS is the wrapper's cost;
- **seen-item exclusion** (50–500 excluded ids per user, half of them among the user's nearest items, half drawn
  from the whole catalogue): the retriever's over-fetch-and-filter (all users in one call, and one user per
  call; forced, as on the CPU the retriever itself now takes a selector) against a FAISS ``IDSelector`` per user
  (``IDSelectorNot(IDSelectorBatch(seen))`` in the search parameters, one call per user, since a selector applies
  to a whole call), with recall@10 of each against exact search under the same exclusion. Measured at each
  index's first search parameters.

Retrievers are built through the registry (``registry.create("retriever", "faiss", ...)``); to query the same
index object with raw FAISS the benchmark reads the retriever's FAISS index (see :func:`faiss_indexes`).
:mod:`fusionrec.core.bench.retrieval_report` writes the JSON, the Markdown table and the plot.
"""

from __future__ import annotations

import gc
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fusionrec.core.bench.retrieval_data import (
    EXCLUDED_MAX,
    EXCLUDED_MIN,
    MIN_ITEMS,
    Dataset,
    Exclusion,
    exact_search,
    faiss_module,
    from_file,
    make_exclusion,
    open_matrix,
    synthetic,
)
from fusionrec.core.bench.timing import alternate, calls_for, compare, paired_calls, seconds_per_call
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import Registry

K = 10
BATCH = 1024
QUERIES, QUICK_QUERIES = 1024, 256
DEFAULT_SIZES, QUICK_SIZES = (10_000, 100_000, 1_000_000), (2_000,)
SINGLE_MIN, SINGLE_MAX, SINGLE_TARGET_S = 20, 300, 1.0
"""Batch-1 repetitions search between 20 and 300 single queries, as many as take about a second."""
LONG_CALL_S, BATCH_ROUND_S = 2.0, 0.2
"""Timed batch calls longer than 2 s are repeated 3 times per side instead of ``repeats``; a round of shorter ones
repeats the call until it takes about 0.2 s."""
EXCLUSION_USERS, QUICK_EXCLUSION_USERS = 200, 32
NAMES = ("raw", "fusionrec")
"""The two sides compared: raw FAISS and fusionrec's retriever, on the same index object."""


class Progress(Protocol):
    """Where the benchmark reports what it is doing (the CLI shows a rich progress bar and these lines)."""

    def start(self, steps: int) -> None:
        """The run has ``steps`` steps (one per index configuration and data set)."""

    def step(self, description: str) -> None:
        """A step begins."""

    def advance(self) -> None:
        """A step is done."""

    def note(self, line: str) -> None:
        """A finished measurement, as one line."""


@dataclass(frozen=True)
class IndexChoice:
    """One index configuration: a FAISS index_factory string (verbatim) and search parameters (verbatim)."""

    factory: str
    search: str = ""

    @property
    def label(self) -> str:
        """``FACTORY|SEARCH`` as given on the command line (``HNSW32|efSearch=64``)."""
        return f"{self.factory}|{self.search}" if self.search else self.factory


@dataclass(frozen=True)
class BenchOptions:
    """What ``fusionrec bench retrieval`` measures; see the module docstring."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    dim: int = 128
    vectors: Path | None = None
    vectors_name: str | None = None
    queries: Path | None = None
    indexes: tuple[IndexChoice, ...] = ()
    """Empty (and no ``milvus`` choices either): :func:`default_indexes` for each data set, if ``retrievers`` has
    ``faiss``."""
    milvus: tuple[Any, ...] = ()
    """:class:`~fusionrec.core.bench.retrieval_milvus.MilvusChoice` values (``--index milvus:…``)."""
    retrievers: tuple[str, ...] = ("faiss",)
    """Whose default configurations to measure: ``faiss`` (when no ``--index`` is given) and ``milvus`` (always)."""
    milvus_uri: str | None = None
    """A Milvus server for the milvus retriever; None: embedded Milvus Lite."""
    metric: str = "ip"
    device: str = "cpu"
    threads: int | None = None
    repeats: int = 5
    seed: int = 0
    quick: bool = False

    @property
    def n_queries(self) -> int:
        return QUICK_QUERIES if self.quick else QUERIES

    @property
    def exclusion_users(self) -> int:
        return QUICK_EXCLUSION_USERS if self.quick else EXCLUSION_USERS


# --- options ------------------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    """``10000,100000,1M`` → item counts (``k``/``M`` suffixes allowed); ``none`` or empty → no synthetic set."""
    if text.strip().lower() in ("", "none", "0"):
        return ()
    sizes = []
    for part in text.split(","):
        token = part.strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", token.replace("_", ""))
        if not match:
            raise FusionrecError(f"--sizes: {token!r} is not an item count; write e.g. 10000,100000,1000000 or 10k,1M")
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
        if value < MIN_ITEMS:
            raise FusionrecError(f"--sizes: {token} items is too few; give at least {MIN_ITEMS}")
        sizes.append(int(value))
    return tuple(sizes)


def parse_index(text: str) -> IndexChoice:
    """``FACTORY[|SEARCH]`` → an :class:`IndexChoice` (both parts kept verbatim, surrounding spaces removed)."""
    factory, _, search = text.partition("|")
    if not factory.strip():
        raise FusionrecError(
            f"--index {text!r}: no index_factory string; write e.g. 'Flat', 'HNSW32|efSearch=64' or "
            "'IVF1024,Flat|nprobe=16'"
        )
    return IndexChoice(factory.strip(), search.strip())


def ivf_lists(n: int) -> int:
    """IVF lists for ``n`` items: the power of two nearest (in log scale) to 4·√n."""
    return int(2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))


def pq_subquantizers(dim: int) -> int:
    """PQ sub-quantizers for ``dim``: the largest divisor of ``dim`` up to dim/4 (4 dimensions per byte)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def default_indexes(n: int, dim: int) -> tuple[IndexChoice, ...]:
    """Flat; HNSW32 at efSearch 32 and 128; IVF(≈4·√n),Flat at nprobe 8, 32, 128; IVF(≈4·√n),PQ(dim/4)np at 32.

    ``np`` skips the polysemous training FAISS's factory does by default for IVF-PQ: minutes on 2 cores, and it
    only matters for polysemous search (the ``ht`` parameter), which these runs do not use.
    """
    ivf = f"IVF{ivf_lists(n)}"
    return (
        IndexChoice("Flat"),
        IndexChoice("HNSW32", "efSearch=32"),
        IndexChoice("HNSW32", "efSearch=128"),
        IndexChoice(f"{ivf},Flat", "nprobe=8"),
        IndexChoice(f"{ivf},Flat", "nprobe=32"),
        IndexChoice(f"{ivf},Flat", "nprobe=128"),
        IndexChoice(f"{ivf},PQ{pq_subquantizers(dim)}np", "nprobe=32"),
    )


def _faiss_reason(message: str) -> str:
    """A FAISS error without its C++ location (``Error in … at file.cpp:123: ``)."""
    return re.sub(r"Error in .*? at \S+:\d+: ", "", message).strip()


def _retriever_params(options: BenchOptions, choice: IndexChoice) -> dict[str, Any]:
    return {
        "index": choice.factory,
        "search": choice.search,
        "metric": options.metric,
        "device": options.device,
        "threads": options.threads,
        "seed": options.seed,
    }


def create_retriever(registry: Registry, options: BenchOptions, choice: IndexChoice) -> Any:
    """The ``faiss`` retriever for ``choice``, through the registry; a one-line FusionrecError naming the option."""
    try:
        return registry.create("retriever", "faiss", **_retriever_params(options, choice))
    except ConfigError as exc:
        problem = exc.problems[0]
        option = "--device" if problem.path[-1:] == ("device",) else "--index"
        given = options.device if option == "--device" else choice.label
        raise FusionrecError(f"{option} {given!r}: {_faiss_reason(problem.message)}") from exc


def group_by_factory(choices: Sequence[IndexChoice]) -> dict[str, list[IndexChoice]]:
    """Choices sharing a factory string share one built index (in the order given)."""
    groups: dict[str, list[IndexChoice]] = {}
    for choice in choices:
        if choice not in groups.setdefault(choice.factory, []):
            groups[choice.factory].append(choice)
    return groups


# --- measuring ----------------------------------------------------------------------------------------------------


def faiss_indexes(retriever: Any, k: int) -> tuple[Any, Any]:
    """The retriever's CPU master index and the index object it searches for ``k`` results (its GPU copy on cuda).

    This reads two private members of fusionrec's faiss retriever (``_index``, ``_searcher``) on purpose: the
    wrapper's cost is only isolated when raw FAISS queries the very same object.
    """
    searcher = getattr(retriever, "_searcher", None)
    master = getattr(retriever, "_index", None)
    if searcher is None or master is None:
        raise FusionrecError(
            f"{type(retriever).__name__} does not expose its FAISS index (_index, _searcher): the benchmark compares "
            "the retriever with raw FAISS on the same index object"
        )
    return master, searcher(k)


def set_search(index: Any, search: str, gpu: bool) -> None:
    """Apply search parameters (``nprobe=…``, ``efSearch=…``) to the index object itself."""
    if not search:
        return
    faiss = faiss_module()

    space = faiss.GpuParameterSpace() if gpu and hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
    space.set_index_parameters(index, search)


def selector_parameters(index: Any, selector: Any) -> Any:
    """Search parameters carrying ``selector`` and the index's own nprobe / efSearch (they would reset otherwise)."""
    faiss = faiss_module()

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe, max_codes=ivf.max_codes)
    inner = index
    while isinstance(inner, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


def resident_bytes() -> int | None:
    """The process's resident memory (Linux ``/proc/self/statm``), or None elsewhere.

    Garbage is collected and glibc asked to return free heap pages first (``malloc_trim``), so that memory freed
    earlier and reused by the next allocation does not hide what an index holds.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum()
    return float(hits) / truth.size


def time_batch(
    index: Any, retriever: Any, batch: npt.NDArray[np.float32], options: BenchOptions, method: str = "search"
) -> dict[str, Any]:
    """Calls with all of ``batch``: raw FAISS and the retriever take turns, who goes first alternating. A round is
    one call, or as many as take about ``BATCH_ROUND_S`` when calls are short. ``method``: the retriever's
    ``search`` (checked) or ``search_prepared`` (the engine's path)."""
    search = getattr(retriever, method)
    start = time.perf_counter()
    index.search(batch, K)
    seconds = time.perf_counter() - start
    rounds = min(options.repeats, 3) if seconds > LONG_CALL_S else options.repeats
    calls = max(1, math.ceil(BATCH_ROUND_S / max(seconds, 1e-6)))
    times = alternate(
        {
            "raw": lambda: [index.search(batch, K) for _ in range(calls)],
            "fusionrec": lambda: [search(batch, K) for _ in range(calls)],
        },
        rounds,
    )
    return {
        "size": len(batch),
        "calls_per_round": calls,
        **compare(calls * len(batch), times["raw"], times["fusionrec"], NAMES),
    }


def time_single(
    index: Any,
    retriever: Any,
    singles: Sequence[npt.NDArray[np.float32]],
    options: BenchOptions,
    method: str = "search",
) -> dict[str, Any]:
    """Single queries, each searched by raw FAISS and by the retriever back to back (who goes first alternating),
    so both sides see the same load; a round is 20–300 queries, as many as take about a second. ``method`` as in
    :func:`time_batch`."""
    search = getattr(retriever, method)
    per_query = seconds_per_call(lambda row: index.search(singles[row], K), len(singles))
    count = calls_for(per_query, len(singles), SINGLE_TARGET_S, SINGLE_MIN, SINGLE_MAX)
    return paired_calls(
        lambda row: index.search(singles[row], K),
        lambda row: search(singles[row], K),
        count,
        options.repeats,
        NAMES,
    )


def measure_factory(
    registry: Registry,
    options: BenchOptions,
    data: Dataset,
    choices: list[IndexChoice],
    truth: npt.NDArray[np.int64],
    exclusion: Exclusion,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Build one index (all ``choices`` share its factory string) and measure each search configuration."""
    faiss = faiss_module()

    factory = choices[0].factory
    if progress:
        progress.step(f"{data.name}: building {factory}")
    before = resident_bytes()
    retriever = create_retriever(registry, options, choices[0])
    gpu = bool(getattr(retriever, "use_gpu", False))
    try:
        start = time.perf_counter()
        retriever.build(data.vectors, data.ids)
        build_s = time.perf_counter() - start
        after = resident_bytes()
        start = time.perf_counter()
        master, index = faiss_indexes(retriever, K)  # on cuda: the GPU copy is made here
        to_device_s = time.perf_counter() - start if gpu else None
    except (FusionrecError, RuntimeError) as exc:  # too few vectors to train; an index the GPU cannot hold
        message = _faiss_reason(exc.problems[0].message if isinstance(exc, ConfigError) else str(exc))
        if progress:
            progress.note(f"{data.name}: {factory} could not be built: {message}")
            for _ in choices:
                progress.advance()
        return [{"index": c.factory, "search": c.search, "label": c.label, "error": message} for c in choices], None
    serialized = int(faiss.serialize_index(master).nbytes)
    built = {
        "build_s": build_s,
        "to_device_s": to_device_s,
        "serialized_bytes": serialized,
        "rss_delta_bytes": None if before is None or after is None else after - before,
    }
    if progress:
        progress.note(f"{data.name}: {factory} built in {build_s:.1f} s, {serialized / 2**20:,.1f} MB serialized")

    queries = data.queries
    batch = queries[: min(BATCH, len(queries))]
    singles = [queries[row : row + 1] for row in range(len(queries))]
    results = []
    for choice in choices:
        if progress:
            progress.step(f"{data.name}: searching {choice.label}")
        set_search(index, choice.search, gpu)
        wrapped = retriever.search(batch, K)
        _, raw_rows = index.search(batch, K)
        entry: dict[str, Any] = {"index": choice.factory, "search": choice.search, "label": choice.label, **built}
        entry["recall_at_10"] = recall(wrapped.ids, truth[: len(batch)])
        entry["same_ids_as_raw"] = float((wrapped.ids == raw_rows).mean())
        entry["batch"] = time_batch(index, retriever, batch, options)
        entry["batch1"] = time_single(index, retriever, singles, options)
        # the engine's path: the same searches through search_prepared (no input checks, copies or padding)
        entry["batch_prepared"] = time_batch(index, retriever, batch, options, "search_prepared")
        entry["batch1_prepared"] = time_single(index, retriever, singles, options, "search_prepared")
        results.append(entry)
        if progress:
            progress.note(
                f"{data.name}: {choice.label}: recall@10 {entry['recall_at_10']:.3f}; batch 1 "
                f"{entry['batch1']['fusionrec_qps']:,.0f} q/s (×{entry['batch1']['ratio']:.3f} raw FAISS), batch "
                f"{len(batch)} {entry['batch']['fusionrec_qps']:,.0f} q/s (×{entry['batch']['ratio']:.3f}); "
                f"search_prepared ×{entry['batch1_prepared']['ratio']:.3f} / ×{entry['batch_prepared']['ratio']:.3f}"
            )
            progress.advance()

    set_search(index, choices[0].search, gpu)
    excluded = measure_exclusion(retriever, index, choices[0], exclusion, options, gpu)
    if progress:
        progress.note(f"{data.name}: {choices[0].label}: exclusion: {exclusion_summary(excluded)}")
    return results, excluded


def overfetch_search(
    retriever: Any, queries: npt.NDArray[np.float32], exclude: Sequence[npt.NDArray[np.int64]]
) -> npt.NDArray[np.int64]:
    """The retriever's over-fetch-and-filter. On the CPU fusionrec's faiss retriever excludes with an IDSelector
    itself; its private ``_selector`` switch, turned off for the call, forces the over-fetch path."""
    switch = hasattr(retriever, "_selector")
    saved = getattr(retriever, "_selector", None)
    if switch:
        retriever._selector = False
    try:
        return np.asarray(retriever.search(queries, K, exclude=exclude).ids)
    finally:
        if switch:
            retriever._selector = saved


def measure_exclusion(
    retriever: Any, index: Any, choice: IndexChoice, exclusion: Exclusion, options: BenchOptions, gpu: bool
) -> dict[str, Any]:
    """Over-fetch and filter (batched, and one user per call) against an IDSelector per user."""
    faiss = faiss_module()

    queries, seen = exclusion.queries, exclusion.seen

    def selector_search(row: int) -> Any:
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(seen[row]))
        return index.search(queries[row : row + 1], K, params=selector_parameters(index, selector))[1]

    per_user = seconds_per_call(lambda row: overfetch_search(retriever, queries[row : row + 1], [seen[row]]), len(seen))
    selector_error = None
    try:
        per_user = max(per_user, seconds_per_call(selector_search, len(seen)))
    except RuntimeError as exc:  # e.g. GPU indexes take no IDSelector
        selector_error = _faiss_reason(str(exc))
    users = calls_for(per_user, len(seen), SINGLE_TARGET_S, SINGLE_MIN, SINGLE_MAX)
    rows, banned = queries[:users], seen[:users]
    calls: dict[str, Callable[[], Any]] = {
        "overfetch_batched": lambda: overfetch_search(retriever, rows, banned),
        "overfetch_per_user": lambda: np.concatenate(
            [overfetch_search(retriever, rows[r : r + 1], [banned[r]]) for r in range(users)]
        ),
    }
    if selector_error is None:
        calls["idselector_per_user"] = lambda: np.concatenate([selector_search(r) for r in range(users)])
    found = {name: call() for name, call in calls.items()}
    times = alternate(calls, options.repeats)
    sizes = [len(s) for s in banned]
    out: dict[str, Any] = {
        "index": choice.factory,
        "search": choice.search,
        "label": choice.label,
        "users": users,
        "excluded_per_user": {"min": min(sizes), "mean": statistics.fmean(sizes), "max": max(sizes)},
        "methods": {
            name: {
                "qps": users / statistics.median(times[name]),
                "recall_at_10": recall(found[name], exclusion.truth[:users]),
                "leaked": int(sum(np.isin(found[name][r], banned[r]).sum() for r in range(users))),
                "seconds": times[name],
            }
            for name in calls
        },
        "idselector_error": selector_error,
    }
    if selector_error is None:
        per_call = out["methods"]["overfetch_per_user"]["qps"], out["methods"]["idselector_per_user"]["qps"]
        out["faster_per_user"] = "over-fetch" if per_call[0] >= per_call[1] else "IDSelector"
        out["speed_ratio_overfetch_to_idselector"] = per_call[0] / per_call[1]
    return out


def exclusion_summary(entry: dict[str, Any]) -> str:
    methods = entry["methods"]
    parts = [
        f"{name.replace('_', ' ')} {m['qps']:,.0f} users/s (recall {m['recall_at_10']:.3f})"
        for name, m in methods.items()
    ]
    return f"{entry['users']} users; " + ", ".join(parts)


def faiss_choices(options: BenchOptions, n: int, dim: int) -> tuple[IndexChoice, ...]:
    """The FAISS configurations to measure: those given, else the defaults unless only Milvus was asked for."""
    if options.indexes or options.milvus:
        return options.indexes
    return default_indexes(n, dim) if "faiss" in options.retrievers else ()


def milvus_choices(options: BenchOptions, n: int) -> tuple[Any, ...]:
    """The Milvus configurations to measure: those given, and the defaults with ``--retriever milvus``."""
    import fusionrec.core.bench.retrieval_milvus as retrieval_milvus

    defaults = retrieval_milvus.default_choices(n) if "milvus" in options.retrievers else ()
    return tuple(dict.fromkeys((*options.milvus, *defaults)))


def run_dataset(registry: Registry, options: BenchOptions, data: Dataset, progress: Progress | None) -> dict[str, Any]:
    """Every index configuration on one data set."""
    import fusionrec.core.bench.retrieval_milvus as retrieval_milvus

    n, dim = data.vectors.shape
    choices = faiss_choices(options, n, dim)
    if progress:
        progress.step(f"{data.name}: exact search (ground truth)")
    start = time.perf_counter()
    truth = exact_search(data, data.queries, K, options.metric)
    truth_s = time.perf_counter() - start
    users = min(options.exclusion_users, len(data.queries))
    exclusion = make_exclusion(data, users, K, options.metric, options.seed)
    if progress:
        progress.advance()
    results: list[dict[str, Any]] = []
    exclusions = []
    for group in group_by_factory(choices).values():
        measured, excluded = measure_factory(registry, options, data, group, truth, exclusion, progress)
        gc.collect()  # the index just measured is gone before the next one's memory is measured
        results += measured
        if excluded is not None:
            exclusions.append(excluded)
    milvus = retrieval_milvus.measure(registry, options, data, milvus_choices(options, n), truth, progress)
    flat = next((r for r in results if r["index"] == "Flat" and "error" not in r), None)
    for entry in results:
        if flat is not None and "error" not in entry:
            entry["speedup_vs_flat"] = {
                mode: entry[mode]["fusionrec_qps"] / flat[mode]["fusionrec_qps"] for mode in ("batch1", "batch")
            }
    return {
        "name": data.name,
        "n": int(n),
        "dim": int(dim),
        "queries": len(data.queries),
        "source": data.source,
        "exact_search_s": truth_s,
        "results": results,
        "exclusion": exclusions,
        "milvus": milvus,
    }


def datasets(options: BenchOptions) -> list[Callable[[], Dataset]]:
    """Loaders of the data sets to measure, in order (built one at a time to bound memory)."""

    def synthetic_set(n: int) -> Callable[[], Dataset]:
        return lambda: synthetic(n, options.dim, options.n_queries, options.seed)

    loaders = [synthetic_set(n) for n in options.sizes]
    if options.vectors is not None:
        vectors = options.vectors
        loaders.append(
            lambda: from_file(vectors, options.queries, options.vectors_name, options.n_queries, options.seed)
        )
    return loaders


def check_options(registry: Registry, options: BenchOptions) -> None:
    """Fail before measuring anything: nothing to measure, unusable files, unknown index strings or parameters."""
    if not options.sizes and options.vectors is None:
        raise FusionrecError("nothing to measure: give --sizes, --vectors FILE.npy, or both")
    if options.queries is not None and options.vectors is None:
        raise FusionrecError("--queries goes with --vectors: queries for the synthetic sets are drawn by the benchmark")
    for path, what in ((options.vectors, "item vectors"), (options.queries, "query vectors")):
        if path is not None:
            open_matrix(path, what)  # the header only: a missing file or another shape fails now
    for choice in options.indexes:
        create_retriever(registry, options, choice)  # parses the factory string and the search parameters
    if not options.indexes:
        create_retriever(registry, options, IndexChoice("Flat"))  # checks --device
    if options.milvus or "milvus" in options.retrievers:
        import fusionrec.core.bench.retrieval_milvus as retrieval_milvus

        for milvus in milvus_choices(options, MIN_ITEMS):
            retrieval_milvus.check_choice(registry, milvus, options.metric, options.milvus_uri)


def run_benchmark(
    registry: Registry, options: BenchOptions, progress: Progress | None = None, command: str = ""
) -> dict[str, Any]:
    """Measure every data set and index configuration; returns plain data (see ``docs/benchmarks.md``).

    Raises:
        FusionrecError: nothing to measure, or an unknown index string, search parameter or device (before
            anything is measured); DataError: an unreadable vectors file. An index that fails to build on one
            data set (too few vectors to train it) is recorded with its error and the run goes on.
    """
    faiss = faiss_module()
    threads_before = faiss.omp_get_max_threads()
    check_options(registry, options)  # builds retrievers, whose `threads` sets FAISS's threads process-wide
    if options.threads is not None:
        faiss.omp_set_num_threads(options.threads)
    threads = faiss.omp_get_max_threads()
    try:
        return _run(registry, options, progress, command, threads)
    finally:
        faiss.omp_set_num_threads(threads_before)


def _run(
    registry: Registry, options: BenchOptions, progress: Progress | None, command: str, threads: int
) -> dict[str, Any]:
    from fusionrec.core.bench.retrieval_report import machine_info, targets

    loaders = datasets(options)
    if progress:
        per_set = len(faiss_choices(options, MIN_ITEMS, options.dim)) + len(milvus_choices(options, MIN_ITEMS))
        progress.start(len(loaders) * (per_set + 1))  # + 1: the exact search of each data set
    started = time.time()
    load = [os.getloadavg()[0]]
    measured = []
    for load_data in loaders:
        data = load_data()
        measured.append(run_dataset(registry, options, data, progress))
        load.append(os.getloadavg()[0])
        del data
        gc.collect()
    result = {
        "benchmark": "retrieval",
        "format": 1,
        "command": command,
        "machine": machine_info(options.device),
        "settings": {
            "k": K,
            "metric": options.metric,
            "device": options.device,
            "threads": threads,
            "repeats": options.repeats,
            "seed": options.seed,
            "quick": options.quick,
            "batch_size": BATCH,
            "exclusion_users": options.exclusion_users,
            "excluded_per_user": [EXCLUDED_MIN, EXCLUDED_MAX],
        },
        "seconds": time.time() - started,
        "load_average_1min": load,
        "datasets": measured,
    }
    result["targets"] = targets(result)
    return result


def make_options(
    *,
    sizes: str | None,
    dim: int,
    vectors: Path | None,
    vectors_name: str | None,
    queries: Path | None,
    indexes: Sequence[str],
    metric: str,
    retrievers: Sequence[str] = ("faiss",),
    milvus_uri: str | None = None,
    device: str,
    threads: int | None,
    repeats: int | None,
    seed: int,
    quick: bool,
) -> BenchOptions:
    """Options from the command line's values; ``sizes`` and ``repeats`` default by ``quick``; ``--index`` values
    that start with ``milvus:`` are Milvus configurations."""
    import fusionrec.core.bench.retrieval_milvus as retrieval_milvus

    milvus = tuple(retrieval_milvus.parse_choice(t) for t in indexes if t.strip().startswith(retrieval_milvus.PREFIX))
    return BenchOptions(
        sizes=(QUICK_SIZES if quick else DEFAULT_SIZES) if sizes is None else parse_sizes(sizes),
        dim=dim,
        vectors=vectors,
        vectors_name=vectors_name,
        queries=queries,
        indexes=tuple(parse_index(t) for t in indexes if not t.strip().startswith(retrieval_milvus.PREFIX)),
        milvus=milvus,
        retrievers=tuple(dict.fromkeys(retrievers)) or ("faiss",),
        milvus_uri=milvus_uri,
        metric=metric,
        device=device,
        threads=threads,
        repeats=(3 if quick else 5) if repeats is None else repeats,
        seed=seed,
        quick=quick,
    )
