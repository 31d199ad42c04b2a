"""The model contract, run by :func:`fusionrec.registry.testing.check_component` for every model.

On a small synthetic data set with planted structure (users and items in four clusters, users interacting with
items of their own cluster, Zipf-skewed popularity within each cluster; each user's last two interactions held out
for validation; an image-like feature per item that carries its cluster, absent for a few items; one user with no
interaction at all): the factory returns a :class:`~fusionrec.core.model.Model`; scoring before ``fit`` raises;
``fit`` (given a ``validate`` callback computing Recall@20 with the training items masked) returns a JSON summary
and logs JSON records; ``score`` gives a finite float ``(len(users), n_items)`` tensor for users in any order, the
user without interactions included, each row independent of the others in the batch; the validation Recall@20
beats random ranking by a margin; fitting again with the same seed gives the same scores; a history with more
interactions (train + valid) is accepted; save → load gives the same scores, and loading a folder with nothing
saved raises. Refit (``train.refit``), unless the model declares ``can_refit = False``: a ``best_epoch`` in the
summary is an int ≥ 1; a fresh model fitted on train + valid with ``FitContext.epochs`` = that ``best_epoch`` never
calls ``validate``, reports ``epochs`` equal to it (when it reports ``epochs``), and scores like a fitted model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from fusionrec.core.model import FitContext, Model

CLUSTERS, USERS, ITEMS, PER_USER, HELD_OUT, K = 4, 80, 120, 12, 2, 20
MARGIN = 0.1
"""How far above the expected Recall@20 of a random ranking a model must get on the planted data."""
BAD_STATE = (FusionrecError, RuntimeError, ValueError)
"""What a model may raise when scored before it is fitted."""


def planted_data(seed: int = 0) -> dict[str, Any]:
    """The synthetic data: ``train`` and ``valid`` interaction frames, ``n_users``, ``n_items`` and ``features``.

    User ``u`` and item ``i`` belong to cluster ``u % 4`` and ``i % 4``. Each of the first :data:`USERS` users
    interacts with :data:`PER_USER` distinct items of its cluster, drawn with Zipf weights over the cluster's items
    (so some items are popular); the last :data:`HELD_OUT` (by timestamp) go to validation. User ``USERS`` has no
    interaction. The ``image`` features are the cluster's one-hot code plus noise, absent for every 10th item.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    per_cluster = ITEMS // CLUSTERS
    weights = 1.0 / np.arange(1, per_cluster + 1)
    weights /= weights.sum()
    rows = []
    for user in range(USERS):
        cluster = user % CLUSTERS
        ranks = rng.choice(per_cluster, size=PER_USER, replace=False, p=weights)
        for time, rank in zip(rng.permutation(PER_USER), ranks, strict=True):  # held-out items: any of them
            rows.append((user, int(rank) * CLUSTERS + cluster, int(time)))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame["rating"] = 1.0
    held_out = frame["timestamp"] >= PER_USER - HELD_OUT
    codes = np.eye(CLUSTERS, dtype=np.float32)[np.arange(ITEMS) % CLUSTERS]
    vectors = np.concatenate([codes, np.zeros((ITEMS, 4), dtype=np.float32)], axis=1)
    vectors += 0.1 * rng.standard_normal(vectors.shape).astype(np.float32)
    present = np.arange(ITEMS) % 10 != 0
    vectors[~present] = np.nan  # absent rows may hold anything
    return {
        "train": frame[~held_out].reset_index(drop=True),
        "valid": frame[held_out].reset_index(drop=True),
        "n_users": USERS + 1,
        "n_items": ITEMS,
        "features": {"image": (vectors, present)},
    }


class RecallAtK:
    """Recall@K of score rows for fixed ``users``: items in ``known`` masked, items in ``relevant`` sought.

    The mean is over the users with at least one relevant item. Everything but the scores is prepared once, so a
    validation callback that calls it every epoch stays cheap.
    """

    def __init__(self, users: npt.NDArray[np.int64], known: pd.DataFrame, relevant: pd.DataFrame, n_items: int) -> None:
        import torch

        self.users = np.asarray(users, dtype=np.int64)
        row = {int(user): index for index, user in enumerate(self.users)}

        def cells(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
            inside = frame[frame["user"].isin(row)]
            rows = [row[int(user)] for user in inside["user"]]
            return torch.tensor(rows, dtype=torch.int64), torch.tensor(inside["item"].to_numpy(), dtype=torch.int64)

        self.known = cells(known)
        self.relevant = torch.zeros(len(self.users), n_items, dtype=torch.bool)
        self.relevant[cells(relevant)] = True
        self.counts = self.relevant.sum(dim=1)

    def __call__(self, scores: torch.Tensor) -> float:
        import torch

        masked = scores.detach().to("cpu", torch.float64).clone()
        masked[self.known] = -np.inf
        hits = self.relevant.gather(1, masked.topk(K, dim=1).indices).sum(dim=1)
        evaluated = self.counts > 0
        return float((hits[evaluated] / self.counts[evaluated]).mean())


def random_recall(data: Mapping[str, Any]) -> float:
    """Expected Recall@K of a uniformly random ranking of each user's unseen items."""
    seen = data["train"].groupby("user").size()
    users = data["valid"]["user"].unique()
    return float(np.mean([min(1.0, K / (data["n_items"] - seen.get(user, 0))) for user in users]))


def model_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    import pandas as pd
    import torch

    from fusionrec.core.model import Model

    label = f"model {spec.type!r}"
    data = planted_data()
    train, valid = data["train"], data["valid"]
    valid_users = np.sort(valid["user"].unique()).astype(np.int64)
    recall_at_k = RecallAtK(valid_users, train, valid, data["n_items"])

    def validate(score: Any) -> dict[str, float]:
        return {f"recall@{K}": recall_at_k(score(valid_users))}

    def fit(seed: int = 0) -> tuple[Model, dict[str, Any], list[dict[str, Any]]]:
        model = registry.build(spec, **context)
        assert isinstance(model, Model), f"{label}: the factory must return a fusionrec.core.model.Model"
        records: list[dict[str, Any]] = []
        summary = model.fit(fit_context(data, validate, seed, records.append))
        return model, summary, records

    unfitted = registry.build(spec, **context)
    try:
        unfitted.score(valid_users[:2], train)
    except BAD_STATE:
        pass
    else:
        raise AssertionError(f"{label}: score() before fit() did not raise")

    model, summary, records = fit()
    for what, value in (("fit()'s summary", summary), ("a log record", records)):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"{label}: {what} is not JSON-serialisable: {exc}") from exc
    assert isinstance(summary, dict), f"{label}: fit() must return a dict, got {type(summary).__name__}"

    rng = np.random.default_rng(1)
    asked = np.concatenate([rng.permutation(valid_users)[:10], [USERS]]).astype(np.int64)  # USERS: no interaction
    scores = model.score(asked, train)
    assert isinstance(scores, torch.Tensor), f"{label}: score() must return a torch.Tensor"
    expected = (len(asked), data["n_items"])
    assert tuple(scores.shape) == expected, f"{label}: score shape {tuple(scores.shape)}, expected {expected}"
    assert scores.dtype.is_floating_point, f"{label}: scores are {scores.dtype}, expected a float dtype"
    assert torch.isfinite(scores).all(), f"{label}: scores contain NaN or inf (a user without history included)"
    single = model.score(asked[2:3], train)
    assert torch.allclose(single, scores[2:3], atol=1e-5), f"{label}: a user's scores depend on the batch"

    recall = recall_at_k(model.score(valid_users, train))
    chance = random_recall(data)
    assert recall >= chance + MARGIN, (
        f"{label}: validation recall@{K} {recall:.3f} on planted data; random ranking gets {chance:.3f} (need "
        f"≥ {chance + MARGIN:.3f})"
    )

    again, _, _ = fit()
    assert torch.allclose(again.score(asked, train), scores, atol=1e-5), f"{label}: the same seed gave other scores"

    both = pd.concat([train, valid], ignore_index=True)
    if getattr(type(model), "can_refit", True):
        check_refit(registry, spec, context, {**data, "train": both}, summary, asked, label)
    later = model.score(asked, both)
    assert tuple(later.shape) == expected and torch.isfinite(later).all(), f"{label}: scoring with train + valid"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder / "saved")
        loaded = type(model).load(folder / "saved")
        assert torch.allclose(loaded.score(asked, train), scores, atol=1e-5), f"{label}: scores differ after load"
        assert torch.allclose(loaded.score(asked, both), later, atol=1e-5), f"{label}: scores differ after load"
        try:
            type(model).load(folder / "nothing-here")
        except (OSError, ValueError, FusionrecError):
            pass
        else:
            raise AssertionError(f"{label}: load() of a folder with nothing saved did not raise")
    return model


def check_refit(
    registry: Registry,
    spec: ComponentSpec,
    context: Mapping[str, Any],
    data: Mapping[str, Any],
    summary: Mapping[str, Any],
    asked: npt.NDArray[np.int64],
    label: str,
) -> None:
    """The refit rule: a fresh model fitted on ``data["train"]`` (train + valid) for the ``best_epoch`` of the
    first fit's ``summary`` trains that many epochs, never validates, and scores ``asked`` like a fitted model."""
    import torch

    best = summary.get("best_epoch")
    assert best is None or (type(best) is int and best >= 1), (
        f"{label}: fit()'s summary has best_epoch {best!r}; it must be a whole number ≥ 1 (the epoch validation "
        "chose: a refit on train + valid trains that many), or be left out by a model without epochs"
    )

    def no_validation(score: Any) -> dict[str, float]:
        raise AssertionError(
            f"{label}: validate() was called in a refit (FitContext.epochs = {best}): a refit trains exactly that "
            "many epochs on train + valid without validating (it has seen validation); see FitContext.epochs"
        )

    refitted = registry.build(spec, **context)
    result = refitted.fit(fit_context(data, no_validation, epochs=best))
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: the refit's summary is not JSON-serialisable: {exc}") from exc
    ran = result.get("epochs") if isinstance(result, dict) else None
    assert best is None or not isinstance(ran, int) or ran == best, (
        f"{label}: asked to refit for {best} epochs (FitContext.epochs), its summary says it trained {ran}"
    )
    scores = refitted.score(asked, data["train"])
    expected = (len(asked), data["n_items"])
    assert isinstance(scores, torch.Tensor) and tuple(scores.shape) == expected, f"{label}: refit scores' shape"
    assert torch.isfinite(scores).all(), f"{label}: the refitted model's scores contain NaN or inf"


def fit_context(
    data: Mapping[str, Any],
    validate: Callable[[Any], dict[str, float]],
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
    epochs: int | None = None,
) -> FitContext:
    """A :class:`~fusionrec.core.model.FitContext` over ``data`` (from :func:`planted_data`); ``epochs`` set: a
    refit's."""
    from fusionrec.core.model import FitContext

    return FitContext(
        train=data["train"].copy(),
        n_users=data["n_users"],
        n_items=data["n_items"],
        features=data["features"],
        validate=validate,
        seed=seed,
        log=log if log is not None else (lambda record: None),
        epochs=epochs,
    )
