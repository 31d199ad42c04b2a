"""The retriever contract, run by :func:`fusionrec.registry.testing.check_component` for every retriever.

On seeded random vectors (200 × 16, external ids that are not ``0..n-1``): the factory returns a
:class:`~fusionrec.core.retrieval.Retriever` with no dimension before :meth:`build`; after it, :meth:`search` gives
``(q, k)`` int64 ids from the index and float32 scores, best first; with the component's example (or default)
parameters the result equals a brute-force numpy reference for its ``metric`` (``ip``, ``l2`` as negative squared
distance, ``cosine``), other parameters need recall@10 ≥ 0.8; excluded ids are never returned; ``k`` beyond the
index size pads with ``-1`` and ``-inf``; ``k ≤ 0`` and queries of another dimension raise; :meth:`add` grows the
index and refuses an id already present; :meth:`remove` counts what was present and the removed ids are never
returned again; save → load gives the same results, and loading a folder with nothing saved raises.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

BAD_INPUT = (ValueError, FusionrecError)
"""What a retriever may raise for bad input (fusionrec's own errors preferred)."""
N, DIM, QUERIES, K = 200, 16, 12, 10


def reference_scores(
    queries: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], metric: str
) -> npt.NDArray[np.float64]:
    """Brute-force scores, higher is better: inner product, negative squared L2 distance, or cosine."""
    q, v = queries.astype(np.float64), vectors.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    if metric == "l2":
        scores: npt.NDArray[np.float64] = -((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return scores
    product: npt.NDArray[np.float64] = q @ v.T
    return product


def _raises(call: Any, label: str, what: str) -> None:
    try:
        call()
    except BAD_INPUT:
        return
    raise AssertionError(f"{label}: {what} was accepted (expected a ValueError or a FusionrecError)")


def retriever_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    from fusionrec.core.retrieval import Retriever, SearchResult
    from fusionrec.registry.contracts import example_params

    label = f"retriever {spec.type!r}"
    info = registry.table("retriever")[spec.type]
    default = registry.spec("retriever", {"type": spec.type, **example_params(info.params)})
    exact = default.to_dict() == spec.to_dict()
    metric = str(getattr(spec.params, "metric", "ip"))

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = (rng.permutation(10 * N)[:N] + 1000).astype(np.int64)
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)

    retriever = registry.build(spec, **context)
    assert isinstance(retriever, Retriever), f"{label}: the factory must return a fusionrec.core.retrieval.Retriever"
    assert retriever.dim is None and len(retriever) == 0, f"{label}: a new retriever must be empty with dim None"
    retriever.build(vectors, ids)
    assert retriever.dim == DIM and len(retriever) == N, (
        f"{label}: dim/len after build: {retriever.dim}, {len(retriever)}"
    )

    def check(result: SearchResult, rows: int, k: int, allowed: set[int]) -> None:
        assert isinstance(result, tuple) and len(result) == 2, f"{label}: search must return a SearchResult"
        assert result.ids.shape == (rows, k) and result.scores.shape == (rows, k), f"{label}: shape {result.ids.shape}"
        assert result.ids.dtype == np.int64, f"{label}: ids are {result.ids.dtype}, expected int64"
        assert result.scores.dtype == np.float32, f"{label}: scores are {result.scores.dtype}, expected float32"
        pad = result.ids == -1
        assert np.array_equal(pad, np.isneginf(result.scores)), f"{label}: -1 ids must go with -inf scores"
        assert np.isfinite(result.scores[~pad]).all(), f"{label}: a found item has a non-finite score"
        for row in range(rows):
            found = result.ids[row][~pad[row]]
            assert not pad[row][: len(found)].any(), f"{label}: padding must come after the results (row {row})"
            assert set(found.tolist()) <= allowed, f"{label}: row {row} returned ids not in the index"
            assert len(set(found.tolist())) == len(found), f"{label}: row {row} returned an id twice"
        finite = np.where(pad, np.float32(-3e38), result.scores)
        assert np.all(np.diff(finite, axis=1) <= 1e-5), f"{label}: scores are not sorted best first"

    def agree(result: SearchResult, live_vectors: Any, live_ids: Any, banned: list[Any] | None = None) -> None:
        ref = reference_scores(queries, live_vectors, metric)
        if banned is not None:
            for row, out in enumerate(banned):
                ref[row, np.isin(live_ids, out)] = -np.inf
        order = np.argsort(-ref, axis=1, kind="stable")[:, :K]
        ref_top = np.take_along_axis(ref, order, axis=1)
        expected = np.where(np.isneginf(ref_top), -1, live_ids[order])
        if exact:
            assert np.array_equal(result.ids, expected), f"{label}: top-{K} differs from brute-force search"
            assert np.allclose(result.scores, ref_top, atol=1e-4, rtol=1e-4), (
                f"{label}: scores differ from brute-force {metric} scores"
            )
        else:
            hits = sum(len(set(a.tolist()) & set(b.tolist()) - {-1}) for a, b in zip(result.ids, expected, strict=True))
            recall = hits / max(1, int((expected >= 0).sum()))
            assert recall >= 0.8, f"{label}: recall@{K} {recall:.2f} against brute-force search (need ≥ 0.8)"

    allowed = set(ids.tolist())
    result = retriever.search(queries, K)
    check(result, QUERIES, K, allowed)
    agree(result, vectors, ids)

    # exclusion: the top 5 of row 0, all but three items in row 1, nothing elsewhere
    top = ids[np.argsort(-reference_scores(queries, vectors, metric), axis=1)]
    exclude = [np.zeros(0, dtype=np.int64) for _ in range(QUERIES)]
    exclude[0], exclude[1] = top[0, :5], top[1, 3:]
    excluded = retriever.search(queries, K, exclude=exclude)
    check(excluded, QUERIES, K, allowed)
    for row, banned in enumerate(exclude):
        assert not set(excluded.ids[row].tolist()) & set(banned.tolist()), f"{label}: row {row} got an excluded id"
    assert (excluded.ids[1, 3:] == -1).all(), f"{label}: a row with 3 allowed items must pad the rest with -1"
    agree(excluded, vectors, ids, exclude)

    # k beyond the index pads; bad k and dimensions raise
    wide = retriever.search(queries[:2], N + 50)
    check(wide, 2, N + 50, allowed)
    assert (wide.ids[:, N:] == -1).all(), f"{label}: k > len(index) must pad with -1"
    if exact:
        assert set(wide.ids[0, :N].tolist()) == allowed, f"{label}: k ≥ len(index) must return every item"
    for bad_k in (0, -3):
        _raises(lambda k=bad_k: retriever.search(queries, k), label, f"k={bad_k}")
    _raises(lambda: retriever.search(queries[:, :-1], K), label, "queries of another dimension")
    _raises(lambda: retriever.add(vectors[:2, :-1], np.array([1, 2], dtype=np.int64)), label, "a vector of another dim")

    # add and remove
    extra = rng.standard_normal((5, DIM)).astype(np.float32)
    extra_ids = np.arange(50, 55, dtype=np.int64)
    retriever.add(extra, extra_ids)
    assert len(retriever) == N + 5, f"{label}: len after adding 5 items is {len(retriever)}"
    _raises(lambda: retriever.add(extra[:1], ids[:1]), label, "adding an id already in the index")
    assert len(retriever) == N + 5, f"{label}: a refused add changed the index"
    all_vectors, all_ids = np.concatenate([vectors, extra]), np.concatenate([ids, extra_ids])
    agree(retriever.search(queries, K), all_vectors, all_ids)
    try:
        removed = retriever.remove(np.concatenate([extra_ids, [999_999_999]]))
    except FusionrecError:
        if exact:
            raise
        removed = None  # this index type cannot remove; it must say so with a FusionrecError
    if removed is not None:
        assert removed == 5, f"{label}: remove() of 5 present ids and 1 unknown returned {removed}"
        assert len(retriever) == N, f"{label}: len after removing 5 items is {len(retriever)}"
        everything = retriever.search(queries[:3], N + 5)
        assert not set(everything.ids.ravel().tolist()) & set(extra_ids.tolist()), f"{label}: removed ids returned"
        agree(retriever.search(queries, K), vectors, ids)

    # save → load
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        before = retriever.search(queries, K, exclude=exclude)
        retriever.save(folder / "saved")
        loaded = type(retriever).load(folder / "saved")
        assert loaded.dim == retriever.dim and len(loaded) == len(retriever), f"{label}: load changed dim/len"
        after = loaded.search(queries, K, exclude=exclude)
        assert np.array_equal(after.ids, before.ids), f"{label}: results differ after save → load"
        assert np.allclose(after.scores, before.scores, atol=1e-6), f"{label}: scores differ after save → load"
        try:
            type(retriever).load(folder / "nothing-here")
        except (OSError, ValueError, FusionrecError):
            pass
        else:
            raise AssertionError(f"{label}: load() of a folder with nothing saved did not raise")
    return retriever
