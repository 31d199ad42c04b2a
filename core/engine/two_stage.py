"""The one retrieve-then-rerank path: evaluation, ``fusionrec recommend``, the Python API and the server all use it.

A :class:`TwoStage` answers "the top items for these users (or this history)" in two stages:

1. **retrieve** the top-N unseen candidates: the user tower's vectors searched in the run's retriever (a FAISS
   index, Milvus, …), users the index returns too few unseen items for searched exactly; without a retriever, an
   exact search over every item vector; for a baseline ``model``, its scores over the whole catalogue;
2. **rerank** them with the ranker (the seed paper's classifier), when one is applied.

:meth:`TwoStage.score_fn` turns the same path into the score function :func:`~fusionrec.core.engine.evaluation.evaluate`
measures, so the reported metrics are those of what is served; :meth:`TwoStage.exact` is the same path with an
exact search, for the "what does the approximate index cost" row. :func:`masked_top_k` is the one place where seen
items are masked before a top-k.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from fusionrec.core.engine.ranker_data import RerankInputs
from fusionrec.core.engine.two_tower import Histories, TwoTowerScorer
from fusionrec.core.errors import FusionrecError
from fusionrec.core.model import Model
from fusionrec.core.ranking import Ranker, RankingFeatures
from fusionrec.core.retrieval import Retriever

ScoreFn = Callable[[npt.NDArray[np.int64]], torch.Tensor]
DEFAULT_CANDIDATES = 200
_log = logging.getLogger(__name__)


class Seen(NamedTuple):
    """Items to exclude, as ``(row, item)`` pairs over a batch of queries (row = position in the batch)."""

    rows: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]

    @classmethod
    def of_histories(cls, histories: Histories, users: npt.NDArray[np.int64]) -> Seen:
        """Every item in each user's history."""
        starts = histories.offsets[users].numpy()
        counts = (histories.offsets[users + 1] - histories.offsets[users]).numpy()
        rows = np.repeat(np.arange(len(users), dtype=np.int64), counts)
        positions = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return cls(rows, histories.items.numpy()[positions].astype(np.int64))

    @classmethod
    def of_frame(cls, known: pd.DataFrame, users: npt.NDArray[np.int64]) -> Seen:
        """Each user's interactions in ``known`` (``user``, ``item`` columns)."""
        rows = known[known["user"].isin(users)]
        position = pd.Series(np.arange(len(users), dtype=np.int64), index=users)
        return cls(
            position.loc[rows["user"].to_numpy()].to_numpy(np.int64),
            rows["item"].to_numpy(np.int64, copy=True),
        )

    @classmethod
    def of_lists(cls, lists: Sequence[npt.ArrayLike]) -> Seen:
        arrays = [np.asarray(items, dtype=np.int64).reshape(-1) for items in lists]
        rows = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
        return cls(rows, np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64))

    def lists(self, n_rows: int) -> list[npt.NDArray[np.int64]]:
        """Per row, its items (what a retriever's ``exclude`` takes)."""
        order = np.argsort(self.rows, kind="stable")
        bounds = np.searchsorted(self.rows[order], np.arange(n_rows + 1))
        items = self.items[order]
        return [items[bounds[r] : bounds[r + 1]] for r in range(n_rows)]

    def plus(self, blocked: npt.NDArray[np.int64], n_rows: int) -> Seen:
        """These pairs and ``blocked`` items excluded for every row."""
        if len(blocked) == 0:
            return self
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), len(blocked))
        return Seen(np.concatenate([self.rows, rows]), np.concatenate([self.items, np.tile(blocked, n_rows)]))


def masked_top_k(scores: torch.Tensor, seen: Seen, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``seen`` items to -inf (in place) and take each row's top ``k``.

    Returns:
        ``(values, items)`` of shape ``(rows, min(k, n_items))``; an item is ``-1`` where its value is -inf (a row
        with fewer than ``k`` unseen items).
    """
    if len(seen.rows):
        device = scores.device
        scores[torch.tensor(seen.rows, device=device), torch.tensor(seen.items, device=device)] = float("-inf")
    values, items = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    items[torch.isneginf(values)] = -1
    return values, items


class Query(NamedTuple):
    """The arguments of :meth:`TwoStage.run` for users at a cutoff (:meth:`TwoStage.as_of`)."""

    queries: torch.Tensor | None
    seen: Seen
    users: npt.NDArray[np.int64]
    history: Histories | pd.DataFrame


class Candidates(NamedTuple):
    """Each query's retrieved items, best first: ``items`` ``(B, N)`` (-1 pads), ``scores`` ``(B, N)`` (-inf pads)."""

    items: torch.Tensor
    scores: torch.Tensor


@dataclass
class Ranked:
    """One query's final list: items, the score it is ordered by, and the two stages' own scores."""

    items: list[int]
    score: list[float]
    retrieval: list[float]
    ranker: list[float] | None


@dataclass
class TwoStage:
    """Retrieval, then reranking, over a trained run.

    Attributes:
        n_items: catalogue size.
        scorer: the two-tower's user tower and item vectors (``None`` for a baseline ``model``).
        model: a baseline model that scores every item (``None`` for a two-tower).
        item_weights: ``(n_items, n_modalities)`` the fuser's per-modality weights (ranking features).
        retriever: the index searched for candidates; ``None``: exact search over every item vector.
        ranker: the reranker, or ``None``.
        apply_ranker: whether :meth:`lists` and :meth:`score_fn` rerank (the run's ``--rerank`` decision).
        candidates: N, the candidates retrieved per query (at least ``k``).
        exact_retriever: what :meth:`exact` searches with (the ``exact`` retriever over the same vectors, so that a
            pipeline whose retriever is ``exact`` reports identical served and exact rows); ``None``: a torch
            matrix product.
        inputs: the ranker's extra features (modality similarities to the user's recent items, popularity,
            recency …; :class:`~fusionrec.core.engine.ranker_data.RerankInputs`), or ``None`` for the vectors,
            weights and retrieval score alone. Its statistics are those of the interactions the model may know:
            :meth:`score_fn` rebinds them to the evaluated cutoff.
    """

    n_items: int
    scorer: TwoTowerScorer | None = None
    model: Model | None = None
    item_weights: torch.Tensor | None = None
    retriever: Retriever | None = None
    ranker: Ranker | None = None
    apply_ranker: bool = True
    candidates: int = DEFAULT_CANDIDATES
    exact_retriever: Retriever | None = None
    inputs: RerankInputs | None = None

    def __post_init__(self) -> None:
        if (self.scorer is None) == (self.model is None):
            raise ValueError("a TwoStage needs either a two-tower scorer or a model")

    # variants ----------------------------------------------------------------------------------------------------

    def exact(self) -> TwoStage:
        """The same path with an exact search instead of the retriever."""
        return replace(self, retriever=self.exact_retriever)

    def without_ranker(self) -> TwoStage:
        return replace(self, apply_ranker=False)

    def at(self, known: pd.DataFrame) -> TwoStage:
        """The same path at a cutoff: the ranker's statistics (popularity, recency, "now") from ``known`` alone, the
        interactions the model may know there (evaluation and ``recommend --as-of`` both use it)."""
        if self.inputs is None or not self.reranks:
            return self
        return replace(self, inputs=self.inputs.at(known))

    @property
    def reranks(self) -> bool:
        return self.ranker is not None and self.apply_ranker and self.scorer is not None

    # stage 1 -----------------------------------------------------------------------------------------------------

    def query_vectors(self, users: npt.NDArray[np.int64], histories: Histories) -> torch.Tensor:
        assert self.scorer is not None
        return self.scorer.user_vectors(users, histories)

    def retrieve(
        self,
        queries: torch.Tensor | None,
        seen: Seen,
        n: int,
        *,
        users: npt.NDArray[np.int64] | None = None,
        histories: Histories | pd.DataFrame | None = None,
    ) -> Candidates:
        """Top-``n`` unseen items per query: query vectors through the retriever (or exactly), or, for a baseline,
        the model's scores of ``users`` from ``histories``."""
        n = min(n, self.n_items)
        if self.model is not None:
            assert users is not None and histories is not None
            scores = self.model.score(users, histories).float().clone()
            values, items = masked_top_k(scores, seen, n)
            return Candidates(items, values)
        assert queries is not None
        if self.retriever is None:
            return self._exact(queries, seen, n)
        exclude = seen.lists(len(queries))
        # the towers' output is finite float32 made here, never a client's vector: the retriever's lean path
        vectors = np.ascontiguousarray(queries.numpy(), dtype=np.float32)
        found = self.retriever.search_prepared(vectors, n, exclude=exclude)
        items, scores = torch.from_numpy(found.ids.copy()), torch.from_numpy(found.scores.copy())
        # an approximate index can return fewer unseen items than asked (an IVF index probing few lists): those
        # queries are searched exactly, so a pipeline never returns short lists because of its index
        available = self.n_items - np.bincount(seen.rows, minlength=len(queries))
        short = np.flatnonzero((items >= 0).sum(dim=1).numpy() < np.minimum(n, available))
        if len(short):
            _log.info(
                "the index returned too few unseen items for %d of %d queries; searched exactly",
                len(short),
                len(queries),
            )
            keep = np.isin(seen.rows, short)
            remap = np.full(len(queries), -1, dtype=np.int64)
            remap[short] = np.arange(len(short))
            exact = self._exact(queries[short], Seen(remap[seen.rows[keep]], seen.items[keep]), n)
            items[short], scores[short] = exact.items, exact.scores
        return Candidates(items, scores)

    def _exact(self, queries: torch.Tensor, seen: Seen, n: int) -> Candidates:
        assert self.scorer is not None
        values, items = masked_top_k(queries @ self.scorer.item_vectors.T, seen, n)
        return Candidates(items, values)

    # stage 2 -----------------------------------------------------------------------------------------------------

    def rerank(
        self,
        queries: torch.Tensor,
        found: Candidates,
        *,
        users: npt.NDArray[np.int64] | None = None,
        histories: Histories | pd.DataFrame | None = None,
    ) -> tuple[Candidates, torch.Tensor | None]:
        """Reorder each query's candidates by the ranker (padding stays last); also returns the ranker's scores
        ``(B, N)`` in the new order (-inf on padding), or ``None`` when no ranker is applied. ``users`` and
        ``histories`` are what :meth:`features` reads for the extra features."""
        if not self.reranks or found.items.numel() == 0:
            return found, None
        assert self.ranker is not None
        valid = found.items >= 0
        features = self.features(queries, found, users=users, histories=histories)
        ranked = torch.full(found.items.shape, float("-inf"))
        ranked[valid] = torch.as_tensor(self.ranker.score(features), dtype=torch.float32)
        order = torch.argsort(ranked, dim=1, descending=True, stable=True)
        return Candidates(found.items.gather(1, order), found.scores.gather(1, order)), ranked.gather(1, order)

    def features(
        self,
        queries: torch.Tensor,
        found: Candidates,
        *,
        users: npt.NDArray[np.int64] | None = None,
        histories: Histories | pd.DataFrame | None = None,
    ) -> RankingFeatures:
        """The ranking features of every real (non-padding) candidate, row by row (groups: the row).

        With :attr:`inputs`, also the extra columns, read from ``histories`` (rows ``users``; ``users=None``: the
        rows of histories given at request time, :meth:`sessions`).
        """
        assert self.scorer is not None
        valid = found.items >= 0
        rows = torch.arange(found.items.shape[0]).unsqueeze(1).expand_as(found.items)[valid]
        items = found.items[valid]
        weights = self.item_weights[items] if self.item_weights is not None else torch.zeros(len(items), 0)
        base = RankingFeatures(
            user=queries[rows],
            item=self.scorer.item_vectors[items],
            modality_weights=weights,
            retrieval_score=found.scores[valid].float(),
            groups=rows.long(),
        )
        if self.inputs is None:
            return base
        if histories is None:
            raise FusionrecError("this ranker reads the user's history: the two-stage path needs it to rerank")
        if isinstance(histories, pd.DataFrame):
            histories = Histories.from_frame(histories, self.inputs.source.n_users)
        extra = self.inputs.columns(users, histories, found.items, valid)
        return replace(base, extra=extra, extra_names=self.inputs.names)

    # the two stages together -------------------------------------------------------------------------------------

    def run(
        self,
        queries: torch.Tensor | None,
        seen: Seen,
        k: int,
        *,
        users: npt.NDArray[np.int64] | None = None,
        histories: Histories | pd.DataFrame | None = None,
    ) -> tuple[Candidates, torch.Tensor | None, Candidates]:
        """Retrieve ``max(k, candidates)`` and rerank: ``(final order, ranker scores, retrieved)``."""
        found = self.retrieve(queries, seen, max(k, self.candidates), users=users, histories=histories)
        if queries is None:
            return found, None, found
        final, ranked = self.rerank(queries, found, users=users, histories=histories)
        return final, ranked, found

    def lists(
        self,
        queries: torch.Tensor | None,
        seen: Seen,
        k: int,
        *,
        users: npt.NDArray[np.int64] | None = None,
        histories: Histories | pd.DataFrame | None = None,
    ) -> list[Ranked]:
        """Each query's top-``k`` list, best first."""
        final, ranked, _ = self.run(queries, seen, k, users=users, histories=histories)
        out = []
        for row in range(final.items.shape[0]):
            keep = (final.items[row, :k] >= 0).nonzero().flatten()
            retrieval = final.scores[row, keep].tolist()
            ranker = ranked[row, keep].tolist() if ranked is not None else None
            out.append(Ranked(final.items[row, keep].tolist(), ranker or retrieval, retrieval, ranker))
        return out

    def as_of(
        self,
        users: npt.NDArray[np.int64],
        histories: Histories,
        known: pd.DataFrame,
        blocked: npt.NDArray[np.int64] | None = None,
    ) -> Query:
        """What :meth:`run` takes for ``users`` at a cutoff, as evaluation builds it: the queries read from
        ``histories``, ``known`` excluded as seen, ``blocked`` excluded for every user. :meth:`score_fn` and
        ``fusionrec recommend --as-of`` both call it, so they get the same lists."""
        seen = Seen.of_frame(known, users)
        if blocked is not None:
            seen = seen.plus(blocked, len(users))
        queries = self.query_vectors(users, histories) if self.scorer is not None else None
        return Query(queries, seen, users, known if self.model is not None else histories)

    def score_fn(
        self, histories: Histories, known: pd.DataFrame, blocked: npt.NDArray[np.int64] | None = None
    ) -> ScoreFn:
        """The served path as a score function for :func:`~fusionrec.core.engine.evaluation.evaluate`: each user's
        final list scored by position (``N − rank``), every other item -inf.

        Args:
            histories: what the user tower reads.
            known: the interactions excluded as seen (the same ones evaluation masks).
            blocked: items that are not candidates at all in this protocol (the cold-item split's warm items).
        """

        stage = self.at(known)

        def score(users: npt.NDArray[np.int64]) -> torch.Tensor:
            q = stage.as_of(users, histories, known, blocked)
            final, _, _ = stage.run(q.queries, q.seen, self.candidates, users=q.users, histories=q.history)
            out = torch.full((len(users), self.n_items), float("-inf"))
            n = final.items.shape[1]
            position = torch.arange(n, 0, -1, dtype=torch.float32).expand_as(final.items)
            real = final.items >= 0
            rows = torch.arange(len(users)).unsqueeze(1).expand_as(final.items)
            out[rows[real], final.items[real]] = position[real]
            return out

        return score

    # single queries ----------------------------------------------------------------------------------------------

    def similar(self, item: int, k: int) -> Ranked:
        """The ``k`` items closest to ``item`` (itself excluded) in the retriever, or exactly."""
        if self.scorer is None:
            raise FusionrecError("similar items need item vectors: this run trained a model without them")
        query = self.scorer.item_vectors[item : item + 1]
        found = self.retrieve(query, Seen.of_lists([[item]]), k)
        keep = (found.items[0] >= 0).nonzero().flatten()
        scores = found.scores[0, keep].tolist()
        return Ranked(found.items[0, keep].tolist(), scores, scores, None)

    def history_vectors(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """User vectors read from item histories given at request time (anonymous or new users)."""
        return self.sessions(histories)[0]

    def sessions(self, histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, Histories]:
        """User vectors read from item histories given at request time (anonymous or new users), and the histories
        as :class:`Histories` rows ``0..B-1`` (what :meth:`lists` takes, with ``users=None``, to rerank them)."""
        if self.scorer is None:
            raise FusionrecError(
                "recommendations from a history need a user tower: this run trained a baseline model, which only "
                "knows the users it was trained on"
            )
        if self.scorer.max_history == 0:
            raise FusionrecError(
                "this run's user tower reads no history (a user-id embedding), so it cannot recommend from a history; "
                "use a history tower (mean, attention_pool, gru, transformer)"
            )
        lists = [list(h)[-self.scorer.max_history :] for h in histories]
        built = Histories(
            torch.as_tensor([i for h in lists for i in h], dtype=torch.long),
            torch.as_tensor(np.concatenate([[0], np.cumsum([len(h) for h in lists])]), dtype=torch.long),
        )
        return self.scorer.user_vectors(np.arange(len(lists), dtype=np.int64), built, users_known=False), built
