"""Two-stage recommendation from a finished run: user vector → retriever top-N → ranker → top-k, explained.

A :class:`Recommender` is opened from a run directory (``fusionrec train`` output). Every user's history is
everything the data holds now (read at request time, so new interactions count without retraining), and the
items in it are never recommended. Each recommendation carries the retrieval score, the ranker's score (when the
run has a ranker) and the fuser's per-modality weights of the item, which say what the item's vector is made of.
Runs of a ``model`` section (baselines) rank the whole catalogue with the model's scores instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from fusionrec.core.assembly import loading
from fusionrec.core.assembly.config import PipelineSpec, load_pipeline
from fusionrec.core.data import IMAGE, TEXT, InteractionData
from fusionrec.core.engine.rundir import CONFIG, RunDir, RunError
from fusionrec.core.engine.two_tower import Histories, TwoTowerScorer
from fusionrec.core.errors import FusionrecError
from fusionrec.core.model import Model
from fusionrec.core.ranking import Ranker, RankingFeatures
from fusionrec.core.retrieval import Retriever
from fusionrec.registry import Registry
from fusionrec.registry.persist import load_module

DEFAULT_CANDIDATES = 200


@dataclass
class Recommendation:
    """One recommended item, with what explains it."""

    rank: int
    item: int
    item_id: Any
    title: str
    score: float
    retrieval_score: float | None = None
    ranker_score: float | None = None
    weights: dict[str, float] = field(default_factory=dict)
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "item_id": _plain(self.item_id),
            "title": self.title,
            "score": round(self.score, 6),
            "retrieval_score": None if self.retrieval_score is None else round(self.retrieval_score, 6),
            "ranker_score": None if self.ranker_score is None else round(self.ranker_score, 6),
            "weights": {k: round(v, 4) for k, v in self.weights.items()},
            "image": self.image,
        }


class Recommender:
    """Recommendations and similar items from a trained run."""

    def __init__(
        self,
        data: InteractionData,
        *,
        scorer: TwoTowerScorer | None = None,
        item_weights: npt.NDArray[np.float32] | None = None,
        modalities: Sequence[str] = (),
        retriever: Retriever | None = None,
        ranker: Ranker | None = None,
        model: Model | None = None,
        candidates: int = DEFAULT_CANDIDATES,
    ) -> None:
        if (scorer is None) == (model is None):
            raise ValueError("a Recommender needs either a two-tower scorer or a model")
        self.data = data
        self.scorer = scorer
        self.item_weights = item_weights
        self.modalities = tuple(modalities)
        self.retriever = retriever
        self.ranker = ranker
        self.model = model
        self.candidates = candidates
        self.histories = Histories.from_frame(data.interactions, data.n_users)
        self._users = {str(u): i for i, u in enumerate(data.user_ids)}
        self._items = {str(v): i for i, v in enumerate(data.item_ids)}

    # ids ------------------------------------------------------------------------------------------------------

    def user_index(self, user_id: Any) -> int:
        """Internal id of a user given by its original id (as in the data files)."""
        found = self._users.get(str(user_id))
        if found is None:
            examples = ", ".join(str(u) for u in self.data.user_ids[:3])
            raise FusionrecError(
                f"unknown user {user_id!r}: the data has {self.data.n_users:,} users (ids such as {examples}); "
                "give a user id as it appears in the interactions file."
            )
        return found

    def item_index(self, item_id: Any) -> int:
        found = self._items.get(str(item_id))
        if found is None:
            examples = ", ".join(str(v) for v in self.data.item_ids[:3])
            raise FusionrecError(
                f"unknown item {item_id!r}: the catalogue has {self.data.n_items:,} items (ids such as {examples})."
            )
        return found

    def check_k(self, k: int) -> None:
        if k <= 0:
            raise FusionrecError(f"k must be a positive number of recommendations, got {k}")
        if k > self.data.n_items:
            raise FusionrecError(f"k={k} is larger than the catalogue ({self.data.n_items:,} items); ask for fewer")

    # recommend ------------------------------------------------------------------------------------------------

    def recommend(
        self, user_ids: Sequence[Any], k: int = 10, candidates: int | None = None
    ) -> list[list[Recommendation]]:
        """Top-``k`` unseen items for each user (original ids), best first."""
        self.check_k(k)
        users = np.array([self.user_index(u) for u in user_ids], dtype=np.int64)
        if self.model is not None:
            return self._from_model(users, k)
        assert self.scorer is not None
        n = max(k, candidates if candidates is not None else self.candidates)
        n = min(n, self.data.n_items)
        vectors = self.scorer.user_vectors(users, self.histories)
        seen = [self.histories.items[self.histories.offsets[u] : self.histories.offsets[u + 1]].numpy() for u in users]
        if self.retriever is not None:
            # the towers' output is contiguous finite float32: the retriever's lean path, without input checks
            found = self.retriever.search_prepared(vectors.numpy().astype(np.float32), n, exclude=seen)
            ids, scores = torch.from_numpy(found.ids.copy()), torch.from_numpy(found.scores.copy())
            # an approximate index can return fewer than k unseen items (an IVF index probing few lists): those
            # users get the exact search instead, so a pipeline never returns short lists because of its index
            short = [row for row in range(len(users)) if int((ids[row] >= 0).sum()) < min(k, n)]
            if short:
                logging.getLogger(__name__).warning(
                    "the index returned fewer than %d unseen items for %d of %d users; searched them exactly",
                    k,
                    len(short),
                    len(users),
                )
                exact_scores, exact_ids = self._exact(vectors[short], [seen[row] for row in short], n)
                ids[short], scores[short] = exact_ids, exact_scores
        else:
            scores, ids = self._exact(vectors, seen, n)
        out = []
        for row in range(len(users)):
            keep = (ids[row] >= 0) & torch.isfinite(scores[row])
            items, retrieval = ids[row][keep], scores[row][keep]
            ranked = None
            if self.ranker is not None and len(items):
                features = RankingFeatures(
                    user=vectors[row].expand(len(items), -1),
                    item=self.scorer.item_vectors[items],
                    modality_weights=self._weights(items),
                    retrieval_score=retrieval.float(),
                )
                ranked = torch.as_tensor(self.ranker.score(features), dtype=torch.float32)
                order = torch.argsort(ranked, descending=True, stable=True)
            else:
                order = torch.arange(len(items))
            out.append(
                [
                    self._row(
                        rank + 1,
                        int(items[i]),
                        float(ranked[i] if ranked is not None else retrieval[i]),
                        float(retrieval[i]),
                        None if ranked is None else float(ranked[i]),
                    )
                    for rank, i in enumerate(order[:k].tolist())
                ]
            )
        return out

    def similar_items(self, item_id: Any, k: int = 10) -> list[Recommendation]:
        """The ``k`` items whose vectors are closest to ``item_id``'s (itself excluded)."""
        self.check_k(k)
        if self.scorer is None:
            raise FusionrecError("similar items need item vectors: this run trained a model without them")
        item = self.item_index(item_id)
        query = self.scorer.item_vectors[item : item + 1]
        if self.retriever is not None:
            found = self.retriever.search_prepared(
                query.numpy().astype(np.float32), k, exclude=[np.array([item], dtype=np.int64)]
            )
            ids, scores = found.ids[0], found.scores[0]
        else:
            all_scores = (query @ self.scorer.item_vectors.T)[0]
            all_scores[item] = float("-inf")
            top = all_scores.topk(min(k, self.data.n_items - 1))
            ids, scores = top.indices.numpy(), top.values.numpy()
        return [
            self._row(rank + 1, int(i), float(s), float(s), None)
            for rank, (i, s) in enumerate(zip(ids, scores, strict=True))
            if i >= 0
        ]

    # helpers --------------------------------------------------------------------------------------------------

    def _exact(
        self, vectors: torch.Tensor, seen: Sequence[npt.NDArray[np.int64]], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-``n`` scores and ids over the item vectors, each row's seen items excluded."""
        assert self.scorer is not None
        all_scores = vectors @ self.scorer.item_vectors.T
        for row, seen_items in enumerate(seen):
            all_scores[row, torch.from_numpy(seen_items)] = float("-inf")
        scores, ids = all_scores.topk(n, dim=1)
        return scores, ids

    def _from_model(self, users: npt.NDArray[np.int64], k: int) -> list[list[Recommendation]]:
        assert self.model is not None
        scores = self.model.score(users, self.data.interactions).float()
        for row, u in enumerate(users):
            scores[row, self.histories.items[self.histories.offsets[u] : self.histories.offsets[u + 1]]] = float("-inf")
        top = scores.topk(k, dim=1)
        return [
            [
                self._row(rank + 1, int(i), float(s), None, None)
                for rank, (i, s) in enumerate(zip(top.indices[row].tolist(), top.values[row].tolist(), strict=True))
                if s != float("-inf")
            ]
            for row in range(len(users))
        ]

    def _weights(self, items: torch.Tensor) -> torch.Tensor:
        if self.item_weights is None:
            return torch.zeros(len(items), 0)
        return torch.from_numpy(self.item_weights[items.numpy()])

    def _row(self, rank: int, item: int, score: float, retrieval: float | None, ranker: float | None) -> Recommendation:
        items = self.data.items
        title = items["title"].iat[item] if "title" in items.columns else items[TEXT].iat[item]
        image = items[IMAGE].iat[item] if IMAGE in items.columns else None
        weights = {}
        if self.item_weights is not None and self.item_weights.shape[1] == len(self.modalities):
            weights = {m: float(w) for m, w in zip(self.modalities, self.item_weights[item], strict=True)}
        return Recommendation(
            rank=rank,
            item=item,
            item_id=self.data.item_ids[item],
            title=str(title),
            score=score,
            retrieval_score=retrieval,
            ranker_score=ranker,
            weights=weights,
            image=Path(image).name if isinstance(image, str) and image else None,
        )


def open_run(path: Path, registry: Registry, candidates: int | None = None) -> Recommender:
    """A :class:`Recommender` over a finished run directory.

    Raises:
        RunError: not a run, not finished, or an artifact missing or corrupted (checked against the manifest).
    """
    from fusionrec.core.engine import run_flow as tr

    run = RunDir.open(path)
    if not run.done("train"):
        raise RunError(
            f"{path}: the run has not finished training (status: {run.status()}); finish it with "
            f"`fusionrec train PIPELINE.yaml --out {path} --resume`."
        )
    spec: PipelineSpec = load_pipeline(run.file(CONFIG), registry)
    loaded = loading.load(run.path / CONFIG, registry)
    n = candidates if candidates is not None else (spec.evaluate.candidates if spec.evaluate else DEFAULT_CANDIDATES)
    if spec.model is not None:
        model = registry.build(spec.model)
        _check_folder(run, tr.MODEL)
        return Recommender(loaded.data, model=type(model).load(run.path / tr.MODEL), candidates=n)
    _check_folder(run, tr.USER_TOWER)
    tower = load_module(run.path / tr.USER_TOWER, registry)
    vectors = torch.from_numpy(np.load(run.file(tr.ITEM_VECTORS)))
    weights = np.load(run.file(tr.ITEM_WEIGHTS))
    modalities = run.stage("train").get("summary", {}).get("modalities", [])
    scorer = TwoTowerScorer(tower, vectors, spec.train.normalize, loaded.data.n_users)
    retriever = ranker = None
    if spec.retriever is not None and (run.path / tr.INDEX).exists():
        _check_folder(run, tr.INDEX)
        retriever = type(registry.build(spec.retriever)).load(run.path / tr.INDEX)
    if spec.ranker is not None and (run.path / tr.RANKER).exists():
        _check_folder(run, tr.RANKER)
        ranker = type(registry.build(spec.ranker)).load(run.path / tr.RANKER)
    return Recommender(
        loaded.data,
        scorer=scorer,
        item_weights=weights,
        modalities=modalities,
        retriever=retriever,
        ranker=ranker,
        candidates=n,
    )


def _check_folder(run: RunDir, name: str) -> None:
    """Check every recorded file under ``name`` against the manifest."""
    prefix = name + "/"
    files = [rel for rel in run.manifest["artifacts"] if rel.startswith(prefix)]
    if not files:
        raise RunError(f"{run.path / name}: missing from the run (nothing recorded in the manifest)")
    for rel in files:
        run.file(rel)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def write_csv(recommender: Recommender, users: Sequence[str], k: int, target: Path, batch: int = 256) -> None:
    """``userId,itemId,rank`` for every user in ``users`` (original ids, seen items excluded), written atomically."""
    import csv
    import io

    from fusionrec.core.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["userId", "itemId", "rank"])
    for start in range(0, len(users), batch):
        chunk = list(users[start : start + batch])
        for user, rows in zip(chunk, recommender.recommend(chunk, k), strict=True):
            writer.writerows([user, _plain(r.item_id), r.rank] for r in rows)
    atomic_write_text(target, buffer.getvalue())
