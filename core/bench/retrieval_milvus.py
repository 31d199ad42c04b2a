"""The ``milvus`` retriever in ``fusionrec bench retrieval``, beside FAISS on the same vectors and queries.

A Milvus configuration is given as ``--index milvus:INDEX[:KEY=VALUE,…][|KEY=VALUE,…]`` (build parameters after
the index type, search parameters after ``|``: ``milvus:HNSW:M=32,efConstruction=40|ef=64``,
``milvus:IVF_FLAT:nlist=512|nprobe=32``, ``milvus:FLAT``), or ``--retriever milvus`` for
:func:`default_choices`. Each is built through the registry (Milvus Lite, embedded, unless ``--milvus-uri`` names
a server) and measured against its FAISS twin (:func:`faiss_twin`: Flat, HNSW{M}, IVF{nlist},Flat with the same
search parameter) built by fusionrec's ``faiss`` retriever: both retrievers take turns on the same queries in the
same process (:mod:`~fusionrec.core.bench.timing`), so ×FAISS = Milvus q/s ÷ FAISS q/s is a side-by-side ratio.
Recorded per configuration: build seconds of both, the Lite folder's size on disk, the process's resident-memory
growth, recall@10 of both against exact search, q/s at batch 1 and batch 1,024.
"""

from __future__ import annotations

import gc
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.bench.retrieval import (
    BATCH,
    BATCH_ROUND_S,
    LONG_CALL_S,
    SINGLE_MAX,
    SINGLE_MIN,
    SINGLE_TARGET_S,
    BenchOptions,
    IndexChoice,
    Progress,
    create_retriever,
    faiss_indexes,
    ivf_lists,
    recall,
    resident_bytes,
    set_search,
)
from fusionrec.core.bench.retrieval_data import Dataset
from fusionrec.core.bench.timing import alternate, calls_for, compare, paired_calls, seconds_per_call
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import Registry

K = 10

PREFIX = "milvus:"
NAMES = ("faiss", "milvus")
"""The two sides timed: fusionrec's faiss retriever on the twin index, and the milvus retriever."""


@dataclass(frozen=True)
class MilvusChoice:
    """One Milvus configuration: index type, build parameters and search parameters."""

    index: str
    build: tuple[tuple[str, int], ...] = ()
    search: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        """The ``--index`` value that gives this choice: ``milvus:HNSW:M=32,efConstruction=40|ef=64``."""
        text = PREFIX + self.index
        if self.build:
            text += ":" + ",".join(f"{k}={v}" for k, v in self.build)
        if self.search:
            text += "|" + ",".join(f"{k}={v}" for k, v in self.search)
        return text

    def params(self, metric: str, uri: str | None) -> dict[str, Any]:
        """The milvus retriever's parameters."""
        return {
            "index": self.index,
            "index_params": dict(self.build),
            "search_params": dict(self.search),
            "metric": metric,
            **({"uri": uri} if uri else {}),
        }


def _pairs(text: str, label: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)", part)
        if not match:
            raise FusionrecError(f"--index {label!r}: {part!r} is not KEY=INTEGER (e.g. M=32, nprobe=16)")
        pairs.append((match.group(1), int(match.group(2))))
    return tuple(pairs)


def parse_choice(text: str) -> MilvusChoice:
    """``milvus:INDEX[:KEY=V,…][|KEY=V,…]`` → a :class:`MilvusChoice` (checked by :func:`check_choice`)."""
    body = text.strip()[len(PREFIX) :]
    head, _, search = body.partition("|")
    index, _, build = head.partition(":")
    if not index.strip():
        raise FusionrecError(
            f"--index {text!r}: no Milvus index type; write e.g. 'milvus:FLAT', 'milvus:HNSW:M=32|ef=64' or "
            "'milvus:IVF_FLAT:nlist=1024|nprobe=16'"
        )
    return MilvusChoice(index.strip().upper(), _pairs(build, text), _pairs(search, text))


def default_choices(n: int) -> tuple[MilvusChoice, ...]:
    """FLAT; HNSW (M 32, efConstruction 40: FAISS's HNSW32) at ef 32 and 128; IVF_FLAT (≈4·√n lists) at nprobe
    8, 32, 128: the FAISS defaults' counterparts."""
    hnsw, ivf = (("M", 32), ("efConstruction", 40)), (("nlist", ivf_lists(n)),)
    return (
        MilvusChoice("FLAT"),
        MilvusChoice("HNSW", hnsw, (("ef", 32),)),
        MilvusChoice("HNSW", hnsw, (("ef", 128),)),
        *(MilvusChoice("IVF_FLAT", ivf, (("nprobe", p),)) for p in (8, 32, 128)),
    )


def faiss_twin(choice: MilvusChoice) -> tuple[str, str]:
    """The FAISS index_factory string and search parameters of the same index (FAISS's own efConstruction, 40)."""
    build, search = dict(choice.build), dict(choice.search)
    if choice.index == "HNSW":
        return f"HNSW{build.get('M', 16)}", f"efSearch={search['ef']}" if "ef" in search else ""
    if choice.index == "IVF_FLAT":
        return f"IVF{build.get('nlist', 128)},Flat", f"nprobe={search.get('nprobe', 10)}"
    return "Flat", ""


def check_choice(registry: Registry, choice: MilvusChoice, metric: str, uri: str | None) -> None:
    """Validate a choice as the milvus retriever's parameters; a one-line FusionrecError naming ``--index``."""
    import importlib.util

    if importlib.util.find_spec("pymilvus") is None:
        raise FusionrecError(
            f"--index {choice.label!r}: the milvus retriever needs pymilvus and milvus-lite; install them with "
            "pip install 'fusionrec[milvus]'"
        )
    try:
        registry.spec("retriever", {"type": "milvus", **choice.params(metric, uri)})
    except ConfigError as exc:
        problems = "; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in exc.problems)
        raise FusionrecError(f"--index {choice.label!r}: {problems}") from exc


def folder_bytes(path: Path | None) -> int | None:
    """Bytes of the files under ``path`` (a Milvus Lite folder), or None for a server."""
    if path is None or not path.exists():
        return None
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _timed_build(retriever: Any, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> float:
    start = time.perf_counter()
    retriever.build(vectors, ids)
    return time.perf_counter() - start


def group_choices(choices: Sequence[MilvusChoice]) -> dict[tuple[str, tuple[tuple[str, int], ...]], list[MilvusChoice]]:
    """Choices with the same index type and build parameters share one built collection (in the order given)."""
    groups: dict[tuple[str, tuple[tuple[str, int], ...]], list[MilvusChoice]] = {}
    for choice in choices:
        if choice not in groups.setdefault((choice.index, choice.build), []):
            groups[(choice.index, choice.build)].append(choice)
    return groups


def measure(
    registry: Registry,
    options: BenchOptions,
    data: Dataset,
    choices: Sequence[MilvusChoice],
    truth: npt.NDArray[np.int64],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    """Every Milvus choice on one data set, each group built once, each search timed against its FAISS twin."""
    entries: list[dict[str, Any]] = []
    for group in group_choices(choices).values():
        entries += _measure_group(registry, options, data, group, truth, progress)
        gc.collect()
    return entries


def _build_pair(
    registry: Registry, options: BenchOptions, data: Dataset, choice: MilvusChoice
) -> tuple[Any, Any, dict[str, Any]]:
    """The milvus retriever and its FAISS twin, built on the data set, with build figures."""
    factory, search = faiss_twin(choice)
    before = resident_bytes()
    milvus = registry.create("retriever", "milvus", **choice.params(options.metric, options.milvus_uri))
    try:
        milvus_s = _timed_build(milvus, data.vectors, data.ids)
        after = resident_bytes()
        twin = create_retriever(registry, options, IndexChoice(factory, search))
        faiss_s = _timed_build(twin, data.vectors, data.ids)
    except BaseException:
        milvus.close()
        raise
    lite = getattr(getattr(milvus, "_session", None), "lite", None)
    built = {
        "build_s": milvus_s,
        "faiss_build_s": faiss_s,
        "stored_bytes": folder_bytes(lite),
        "rss_delta_bytes": None if before is None or after is None else after - before,
        "faiss_index": factory,
    }
    return milvus, twin, built


def _measure_group(
    registry: Registry,
    options: BenchOptions,
    data: Dataset,
    group: list[MilvusChoice],
    truth: npt.NDArray[np.int64],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    if progress:
        progress.step(f"{data.name}: building {group[0].label.partition('|')[0]} and its FAISS twin")
    milvus, twin, built = _build_pair(registry, options, data, group[0])
    if progress:
        progress.note(
            f"{data.name}: {group[0].label.partition('|')[0]} built in {built['build_s']:.1f} s "
            f"(FAISS {built['faiss_index']}: {built['faiss_build_s']:.1f} s)"
        )
    queries = data.queries
    batch = queries[: min(BATCH, len(queries))]
    faiss_index = faiss_indexes(twin, K)[1]
    entries = []
    with milvus:
        for choice in group:
            milvus.params["search_params"] = dict(choice.search)
            twin_search = faiss_twin(choice)[1]
            set_search(faiss_index, twin_search, False)
            entry: dict[str, Any] = {"index": choice.index, "label": choice.label, "faiss_search": twin_search, **built}
            entry["recall_at_10"] = recall(milvus.search(batch, K).ids, truth[: len(batch)])
            entry["faiss_recall_at_10"] = recall(twin.search(batch, K).ids, truth[: len(batch)])
            entry["batch"] = _time_batch(twin, milvus, batch, options.repeats)
            entry["batch1"] = _time_single(twin, milvus, [queries[r : r + 1] for r in range(len(queries))], options)
            entries.append(entry)
            if progress:
                progress.note(
                    f"{data.name}: {choice.label}: recall@10 {entry['recall_at_10']:.3f} (FAISS "
                    f"{entry['faiss_recall_at_10']:.3f}); batch 1 {entry['batch1']['milvus_qps']:,.0f} q/s "
                    f"(×{entry['batch1']['ratio']:.3f} FAISS), batch {len(batch)} "
                    f"{entry['batch']['milvus_qps']:,.0f} q/s (×{entry['batch']['ratio']:.3f})"
                )
                progress.advance()
    return entries


def _time_batch(twin: Any, milvus: Any, batch: npt.NDArray[np.float32], repeats: int) -> dict[str, Any]:
    """Calls with all of ``batch``, FAISS and Milvus taking turns (who goes first alternating)."""
    start = time.perf_counter()
    milvus.search(batch, K)
    seconds = time.perf_counter() - start
    rounds = min(repeats, 3) if seconds > LONG_CALL_S else repeats
    calls = max(1, math.ceil(BATCH_ROUND_S / max(seconds, 1e-6)))
    times = alternate(
        {
            "faiss": lambda: [twin.search(batch, K) for _ in range(calls)],
            "milvus": lambda: [milvus.search(batch, K) for _ in range(calls)],
        },
        rounds,
    )
    timed = compare(calls * len(batch), times["faiss"], times["milvus"], NAMES)
    return {"size": len(batch), "calls_per_round": calls, **timed}


def _time_single(
    twin: Any, milvus: Any, singles: Sequence[npt.NDArray[np.float32]], options: BenchOptions
) -> dict[str, Any]:
    """Single queries, FAISS and Milvus back to back on each (who goes first alternating)."""
    per_query = seconds_per_call(lambda row: milvus.search(singles[row], K), len(singles))
    count = calls_for(per_query, len(singles), SINGLE_TARGET_S, SINGLE_MIN, SINGLE_MAX)
    return paired_calls(
        lambda row: twin.search(singles[row], K),
        lambda row: milvus.search(singles[row], K),
        count,
        options.repeats,
        NAMES,
    )


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.1f}"


def _qps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines of one data set's Milvus table (empty without Milvus entries)."""
    if not entries:
        return []
    batch = entries[0]["batch"]["size"]
    lines = [
        "",
        "Milvus (the `milvus` retriever, Milvus Lite in this process) against its FAISS twin (fusionrec's `faiss` "
        "retriever on the same index type and parameters), taking turns on the same queries; ×FAISS = Milvus q/s "
        "÷ FAISS q/s; MB on disk: the Lite folder.",
        "",
        f"| Milvus index | FAISS twin | build s (FAISS) | MB on disk | RSS Δ MB | recall@10 (FAISS) | batch 1 q/s | "
        f"×FAISS | batch {batch} q/s | ×FAISS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        twin = f"`{e['faiss_index']}`" + (f" {e['faiss_search']}" if e["faiss_search"] else "")
        label = e["label"].replace("|", "\\|")  # a bare | splits a Markdown table cell, even inside backticks
        lines.append(
            f"| `{label}` | {twin} | {e['build_s']:.1f} ({e['faiss_build_s']:.1f}) | {_mb(e['stored_bytes'])} | "
            f"{_mb(e['rss_delta_bytes'])} | {e['recall_at_10']:.3f} ({e['faiss_recall_at_10']:.3f}) | "
            f"{_qps(e['batch1']['milvus_qps'])} | {e['batch1']['ratio']:.3f} | {_qps(e['batch']['milvus_qps'])} | "
            f"{e['batch']['ratio']:.3f} |"
        )
    return lines
