"""The ranker contract, run by :func:`fusionrec.registry.testing.check_component` for every ranker.

On a seeded synthetic problem (8-dim user and item vectors, 3 modality weights, a noise retrieval score; a pair is
relevant when user and item point the same way, ``user · item > 0``, which ``user ⊙ item`` makes linearly
separable): the factory returns a :class:`~fusionrec.core.ranking.Ranker`; scoring before :meth:`fit` raises;
after fitting on 2,000 pairs, :meth:`score` gives finite ``(n,)`` float scores whose AUC on 1,000 fresh pairs is
above 0.9; a pair's score does not depend on the other pairs scored with it; fitting leaves its inputs unchanged;
two builds fitted on the same data give equal scores (seeded); labels of the wrong length, labels outside {0, 1},
and features of other sizes at score time raise; save → load gives the same scores, and loading a folder with
nothing saved raises. The same problem with extra feature columns (:attr:`RankingFeatures.extra`, two noise
columns) and query groups (:attr:`RankingFeatures.groups`, lists of 20 pairs) must fit and score just as well
(AUC above 0.9, batch-independent scores, save → load), whether the ranker uses them or ignores them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionrec.core.errors import FusionrecError
from fusionrec.core.params import ComponentSpec
from fusionrec.registry.tables import Registry

if TYPE_CHECKING:
    import torch

    from fusionrec.core.ranking import Ranker, RankingFeatures

BAD_INPUT = (ValueError, FusionrecError)
"""What a ranker may raise for bad input (fusionrec's own errors preferred)."""
NOT_FITTED = (RuntimeError, ValueError, FusionrecError)
"""What a ranker may raise when asked to score before it was fitted."""
DIM, MODALITIES, TRAIN, TEST = 8, 3, 2000, 1000
MIN_AUC = 0.9


def synthetic_pairs(
    n: int,
    seed: int,
    user_dim: int = DIM,
    item_dim: int = DIM,
    modalities: int = MODALITIES,
    extra: int = 0,
    group_size: int | None = None,
) -> tuple[RankingFeatures, torch.Tensor]:
    """``n`` seeded pairs and their labels: relevant when ``user · item > 0`` (item_dim == user_dim), else random.

    With ``extra > 0`` the features carry that many noise columns named ``noise_0``, …; with ``group_size`` their
    groups are consecutive lists of that many pairs (query ids ``0, 0, …, 1, 1, …``).
    """
    import torch

    from fusionrec.core.ranking import RankingFeatures

    gen = torch.Generator().manual_seed(seed)
    user = torch.randn(n, user_dim, generator=gen)
    item = torch.randn(n, item_dim, generator=gen)
    weights = torch.softmax(torch.randn(n, modalities, generator=gen), dim=1)
    score = 3.0 + 2.0 * torch.randn(n, generator=gen)  # noise, off-centre: exercises the standardisation
    if user_dim == item_dim:
        labels = ((user * item).sum(dim=1) > 0).to(torch.float32)
    else:
        labels = (torch.rand(n, generator=gen) > 0.5).to(torch.float32)
    columns = torch.randn(n, extra, generator=gen) * 5.0 + 1.0 if extra else None
    groups = torch.arange(n) // group_size if group_size else None
    names = tuple(f"noise_{i}" for i in range(extra))
    return RankingFeatures(user, item, weights, score, extra=columns, extra_names=names, groups=groups), labels


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative (ties ½)."""
    import torch

    scores, labels = scores.detach().to("cpu", torch.float64).reshape(-1), labels.to("cpu").reshape(-1) > 0.5
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("AUC needs both positive and negative labels")
    above = (positives[:, None] > negatives[None, :]).to(torch.float64).mean()
    ties = (positives[:, None] == negatives[None, :]).to(torch.float64).mean()
    return float(above + 0.5 * ties)


def _raises(call: Callable[[], Any], errors: tuple[type[BaseException], ...], label: str, what: str) -> None:
    try:
        call()
    except errors:
        return
    names = " or ".join(e.__name__ for e in errors)
    raise AssertionError(f"{label}: {what} was accepted (expected a {names})")


def ranker_contract(registry: Registry, spec: ComponentSpec, context: Mapping[str, Any]) -> Any:
    import torch

    from fusionrec.core.ranking import Ranker, RankingFeatures

    label = f"ranker {spec.type!r}"

    def build() -> Ranker:
        ranker = registry.build(spec, **context)
        assert isinstance(ranker, Ranker), f"{label}: the factory must return a fusionrec.core.ranking.Ranker"
        return ranker

    train, labels = synthetic_pairs(TRAIN, seed=0)
    test, test_labels = synthetic_pairs(TEST, seed=1)

    ranker = build()
    _raises(lambda: ranker.score(test), NOT_FITTED, label, "score() before fit()")

    before = [t.clone() for t in (train.user, train.item, train.modality_weights, train.retrieval_score, labels)]
    ranker.fit(train, labels)
    after = (train.user, train.item, train.modality_weights, train.retrieval_score, labels)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), f"{label}: fit() modified its inputs"

    scores = ranker.score(test)
    assert isinstance(scores, torch.Tensor), f"{label}: score() must return a torch.Tensor"
    assert scores.shape == (TEST,), f"{label}: score() gave shape {tuple(scores.shape)}, expected ({TEST},)"
    assert scores.dtype.is_floating_point, f"{label}: scores are {scores.dtype}, expected a float dtype"
    assert torch.isfinite(scores).all(), f"{label}: scores contain NaN or inf"
    area = auc(scores, test_labels)
    assert area > MIN_AUC, f"{label}: AUC {area:.3f} on a separable problem (need > {MIN_AUC})"

    part = ranker.score(test.select(slice(0, 7)))
    assert torch.allclose(part, scores[:7], atol=1e-5), f"{label}: a pair's score depends on the rest of the batch"
    empty = ranker.score(test.select(slice(0, 0)))
    assert tuple(empty.shape) == (0,), f"{label}: scoring no pairs gave shape {tuple(empty.shape)}, expected (0,)"

    again = build()
    again.fit(train, labels)
    assert torch.equal(again.score(test), scores), f"{label}: two builds fitted on the same data score differently"

    # bad input
    fresh = build()
    _raises(lambda: fresh.fit(train, labels[:-1]), BAD_INPUT, label, "labels of the wrong length")
    _raises(lambda: fresh.fit(train, labels.reshape(-1, 1).repeat(1, 2)), BAD_INPUT, label, "(n, 2) labels")
    twos = labels.clone()
    twos[0] = 2.0
    _raises(lambda: fresh.fit(train, twos), BAD_INPUT, label, "a label of 2")
    wider_user, _ = synthetic_pairs(10, seed=2, user_dim=DIM + 1)
    _raises(lambda: ranker.score(wider_user), BAD_INPUT, label, "user vectors of another size than at fit time")
    more_weights, _ = synthetic_pairs(10, seed=3, modalities=MODALITIES + 1)
    _raises(lambda: ranker.score(more_weights), BAD_INPUT, label, "more modality weights than at fit time")
    short = RankingFeatures(test.user, test.item[:-1], test.modality_weights, test.retrieval_score)
    _raises(lambda: ranker.score(short), BAD_INPUT, label, "features whose parts have different lengths")

    # save → load
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ranker.save(folder / "saved")
        loaded = type(ranker).load(folder / "saved")
        assert isinstance(loaded, Ranker), f"{label}: load() must return a Ranker"
        assert torch.allclose(loaded.score(test), scores, atol=1e-6), f"{label}: scores differ after save → load"
        _raises(
            lambda: type(ranker).load(folder / "nothing-here"),
            (OSError, ValueError, FusionrecError),
            label,
            "load() of a folder with nothing saved",
        )
    _extra_and_groups(build, label)
    return ranker


def _extra_and_groups(build: Callable[[], Ranker], label: str) -> None:
    """Fit and score features with extra columns and query groups; a ranker may use them or ignore them."""
    import torch

    train, labels = synthetic_pairs(TRAIN, seed=0, extra=2, group_size=20)
    test, test_labels = synthetic_pairs(TEST, seed=1, extra=2, group_size=20)
    assert train.extra is not None and train.groups is not None
    before = [t.clone() for t in (train.extra, train.groups)]
    ranker = build()
    ranker.fit(train, labels)
    assert torch.equal(before[0], train.extra) and torch.equal(before[1], train.groups), (
        f"{label}: fit() modified the extra features or the groups"
    )
    scores = ranker.score(test)
    assert scores.shape == (TEST,), f"{label}: with extra features, score() gave shape {tuple(scores.shape)}"
    assert torch.isfinite(scores).all(), f"{label}: with extra features, scores contain NaN or inf"
    area = auc(scores, test_labels)
    assert area > MIN_AUC, f"{label}: AUC {area:.3f} with extra features and groups (need > {MIN_AUC})"
    part = ranker.score(test.select(slice(3, 10)))
    assert torch.allclose(part, scores[3:10], atol=1e-5), (
        f"{label}: with groups, a pair's score depends on the rest of the batch"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ranker.save(Path(tmp) / "saved")
        loaded = type(ranker).load(Path(tmp) / "saved")
        assert torch.allclose(loaded.score(test), scores, atol=1e-6), (
            f"{label}: with extra features, scores differ after save → load"
        )
