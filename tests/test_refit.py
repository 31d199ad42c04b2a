"""`train.refit`: choose on validation, retrain from scratch on train + valid, score test with the refit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from train_fixtures import write_pipeline

from fusionrec.core.api import Pipeline
from fusionrec.core.assembly import loading
from fusionrec.core.cli import main
from fusionrec.core.engine.context import prepare
from fusionrec.core.engine.learners import build_two_tower
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext, Model
from fusionrec.plugins.models.itemknn_impl import ItemKNNModel
from fusionrec.registry import Registry, get_registry, hookimpl
from fusionrec.registry.model_contracts import fit_context, planted_data
from fusionrec.registry.testing import check_component

# a GRU with dropout (randomness in every epoch) whose validation Recall@20 peaks at epoch 3 of 5
USER = "{type: gru, max_history: 8, dropout: 0.1}"
TRAIN = "{epochs: 5, batch_size: 64, lr: 0.003, patience: 5, seed: 0%s}"
BEST = 3


def train(pipeline: Path, out: Path, registry: Registry | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    resume = kwargs.pop("resume", False)
    return Pipeline.load(pipeline, registry or get_registry()).train(out, resume=resume, **kwargs)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same two-tower pipeline trained without and with refit."""
    root = tmp_path_factory.mktemp("refit")
    plain = write_pipeline(root, user=USER, train=TRAIN % "", name="plain.yaml")
    refit = write_pipeline(root, user=USER, train=TRAIN % ", refit: true", name="refit.yaml")
    return {
        "root": root,
        "pipeline": refit,
        "plain": train(plain, root / "plain"),
        "refit": train(refit, root / "refit"),
    }


def test_refit_keeps_validation_and_changes_test(runs: dict[str, Any]) -> None:
    plain, refit = runs["plain"], runs["refit"]
    assert plain.summary["best_epoch"] == refit.summary["best_epoch"] == BEST
    assert refit.metrics["valid"]["metrics"] == plain.metrics["valid"]["metrics"]
    assert refit.metrics["valid"]["ci"] == plain.metrics["valid"]["ci"]
    assert refit.metrics["test"]["metrics"] != plain.metrics["test"]["metrics"]
    assert "refit" not in plain.summary and "model" not in plain.metrics["test"]["protocol"]
    chosen = f"trained on train, epoch {BEST} chosen on validation recall@20"
    assert refit.metrics["valid"]["protocol"]["model"] == chosen
    assert refit.metrics["test"]["protocol"]["model"].startswith(f"refit on train+valid for {BEST} epochs")
    # the refit is a whole run of its own: the main stage's files stay, the refit's sit beside them
    run = RunDir.open(runs["root"] / "refit")
    assert run.verify() == [] and run.done("train") and run.done("refit")
    names = set(run.manifest["artifacts"])
    assert {f"best-{BEST}.pt", "checkpoint-5.pt", "epochs.jsonl", f"refit-checkpoint-{BEST}.pt"} <= names
    assert not any(name.startswith("refit-best") for name in names)
    assert len(lines(run.path / "epochs.jsonl")) == 5


def test_refit_trains_exactly_the_best_epoch_without_validation(runs: dict[str, Any]) -> None:
    refit = runs["refit"]
    assert refit.summary["refit"]["epochs"] == refit.summary["best_epoch"] == BEST
    assert refit.summary["refit"]["data"] == "train+valid"
    log = lines(runs["root"] / "refit" / "refit-epochs.jsonl")
    assert [r["epoch"] for r in log] == list(range(1, BEST + 1))
    assert all("valid" not in r and np.isfinite(r["loss"]) for r in log)
    stage = RunDir.open(runs["root"] / "refit").stage("refit")
    assert stage["summary"]["epochs"] == BEST and stage["checkpoint"] == f"refit-checkpoint-{BEST}.pt"


def test_the_saved_towers_are_the_refit_model(runs: dict[str, Any]) -> None:
    root = runs["root"]
    saved = np.load(root / "refit" / "item_vectors.npy")
    assert not np.allclose(saved, np.load(root / "plain" / "item_vectors.npy"))
    # rebuild the refit model from its last checkpoint: its item vectors are the saved ones
    loaded = loading.load(runs["pipeline"], get_registry())
    prepared = prepare(loaded, loading.run_split(loaded), get_registry(), progress=False, console=None)
    net = build_two_tower(prepared.loaded.spec, prepared, get_registry())
    blob = torch.load(root / "refit" / f"refit-checkpoint-{BEST}.pt", weights_only=True)
    net.load_state_dict(blob["model"])
    with torch.no_grad():
        vectors = net.eval().item_vectors()[0].numpy()
    np.testing.assert_array_equal(saved, vectors)


def test_refit_interrupted_and_resumed_ends_like_an_uninterrupted_run(runs: dict[str, Any]) -> None:
    root, whole = runs["root"], runs["refit"]
    out = root / "resumed"
    # 5 epochs: the main stage ends, the refit has not started
    first = train(runs["pipeline"], out, stop_after=5)
    assert first.metrics == {} and RunDir.open(out).stage("train")["status"] == "interrupted"
    assert not (out / "refit-epochs.jsonl").exists()
    # one refit epoch of three
    second = train(runs["pipeline"], out, resume=True, stop_after=1)
    assert second.metrics == {}
    assert RunDir.open(out).stage("refit")["checkpoint"] == "refit-checkpoint-1.pt"
    assert len(lines(out / "refit-epochs.jsonl")) == 1
    resumed = train(runs["pipeline"], out, resume=True)
    assert RunDir.open(out).verify() == []
    assert resumed.metrics["valid"]["metrics"] == whole.metrics["valid"]["metrics"]
    assert resumed.metrics["test"]["metrics"] == whole.metrics["test"]["metrics"]
    assert [r["loss"] for r in lines(out / "refit-epochs.jsonl")] == [
        r["loss"] for r in lines(root / "refit" / "refit-epochs.jsonl")
    ]
    np.testing.assert_array_equal(np.load(out / "item_vectors.npy"), np.load(root / "refit" / "item_vectors.npy"))
    assert not (out / "refit-checkpoint-1.pt").exists()  # superseded checkpoints are removed


def test_the_cli_says_what_the_refit_did(runs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(runs["pipeline"]), "--out", str(runs["root"] / "refit"), "--resume", "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"refit: retrained from scratch on train+valid for {BEST} epochs" in " ".join(printed.split())


@pytest.mark.parametrize("model", ["bpr_mf", "popularity"])
def test_a_model_section_refits_on_train_and_valid(tmp_path: Path, model: str) -> None:
    block = "{type: bpr_mf, epochs: 30, lr: 0.01, patience: 3}" if model == "bpr_mf" else "{type: popularity}"
    pipelines = {
        refit: write_pipeline(
            tmp_path,
            encoders=False,
            user="",
            train=f"{{seed: 0, refit: {refit}}}",
            extra=f"model: {block}\n",
            name=f"{refit}.yaml",
        )
        for refit in ("false", "true")
    }
    plain, refit = (train(pipelines[r], tmp_path / r) for r in ("false", "true"))
    assert refit.metrics["valid"]["metrics"] == plain.metrics["valid"]["metrics"]
    assert RunDir.open(tmp_path / "true").verify() == []
    saved = json.loads((tmp_path / "true" / "model" / "model.json").read_text())["summary"]
    if model == "bpr_mf":
        best = plain.summary["best_epoch"]
        assert best >= 1 and refit.summary["refit"]["epochs"] == best
        assert saved["refit"] is True and saved["epochs"] == best  # the saved model is the refit
        assert saved["interactions"] > plain.summary["interactions"]  # it learned from train + valid
        assert [r["epoch"] for r in lines(tmp_path / "true" / "refit-epochs.jsonl")] == list(range(1, best + 1))
        assert refit.metrics["test"]["metrics"] != plain.metrics["test"]["metrics"]
        assert refit.metrics["test"]["protocol"]["model"].startswith(f"refit on train+valid for {best} epoch")
    else:
        # no epochs: fitted on train + valid; popularity already counted the known history at test time
        assert refit.summary["refit"]["epochs"] is None
        assert saved["interactions"] == refit.summary["refit"]["summary"]["interactions"]
        assert saved["interactions"] > plain.summary["interactions"]
        assert refit.metrics["test"]["metrics"] == plain.metrics["test"]["metrics"]
        assert "no epochs to choose" in refit.metrics["test"]["protocol"]["model"]


@pytest.mark.parametrize("name", ["bpr_mf", "lightgcn", "vbpr"])
def test_a_refit_on_the_same_data_is_the_model_validation_chose(name: str) -> None:
    """Same seed, same data, best_epoch epochs without validating: exactly the parameters the first fit kept."""
    data = planted_data()
    users = np.sort(data["valid"]["user"].unique()).astype(np.int64)
    rng = iter([0.1, 0.3, 0.2, 0.25, 0.1])  # validation peaks at epoch 2

    def peak(score: Any) -> dict[str, float]:
        return {"recall@20": next(rng)}

    first = get_registry().create("model", name, epochs=5, patience=5)
    summary = first.fit(fit_context(data, peak))
    assert summary["best_epoch"] == 2

    def forbidden(score: Any) -> dict[str, float]:
        raise AssertionError("validate called in a refit")

    again = get_registry().create("model", name, epochs=5, patience=5)
    refit_summary = again.fit(fit_context(data, forbidden, epochs=2))
    assert refit_summary["epochs"] == 2 and refit_summary["refit"] is True and "best_epoch" not in refit_summary
    torch.testing.assert_close(again.score(users, data["train"]), first.score(users, data["train"]))


def test_refit_with_a_ranker_fits_one_ranker_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranker learns from a time slice of train, so it combines with refit: the verdict and the validation row
    use a ranker fitted on the train-only model's candidates, test and serving one refitted on the refit model's.
    Neither ever reads test; the one validation is scored with never reads validation."""
    from fusionrec.core.engine import ranker_fit

    seen: list[pd.DataFrame] = []
    fit = ranker_fit.fit_on_slice

    def spy(ranker: Any, stage: Any, train: pd.DataFrame, *args: Any) -> dict[str, Any]:
        seen.append(train.copy())
        return fit(ranker, stage, train, *args)

    monkeypatch.setattr(ranker_fit, "fit_on_slice", spy)
    settings = "{epochs: 2, batch_size: 64, lr: 0.003, seed: 0, refit: true}"
    pipeline = write_pipeline(tmp_path, user=USER, train=settings, extra="ranker: {type: logistic, epochs: 5}\n")
    text = pipeline.read_text().replace("{bootstrap: 200}", "{bootstrap: 200, candidates: 50, ranker_holdout: 2}")
    pipeline.write_text(text)
    run = train(pipeline, tmp_path / "run", rerank="always")
    folder = tmp_path / "run"
    rerank = json.loads((folder / "rerank.json").read_text())
    assert (folder / "ranker").is_dir() and (folder / "ranker-valid").is_dir()
    assert rerank["fit"]["holdout"] == 2 and rerank["refit"]["holdout"] == 2
    # the refit's slice is over train + valid: more history, more held-out users
    assert rerank["refit"]["history"] > rerank["fit"]["history"]
    assert "popularity" in rerank["features"] and "time slice of train" in rerank["protocol"]
    metrics = json.loads((folder / "metrics.json").read_text())
    # validation is scored with the judged (train-only) ranker: its row is the verdict's "after"
    assert metrics["valid"]["metrics"] == pytest.approx(rerank["valid_after"]["metrics"])
    assert "reranked" in metrics["test"]["protocol"]["path"]
    assert run.metrics["rerank"]["applied"] is True
    split = loading.run_split(loading.load(pipeline, get_registry()))
    keys = lambda frame: set(zip(frame["user"], frame["item"], frame["timestamp"], strict=True))  # noqa: E731
    judged, served = seen
    assert keys(judged) == keys(split.train)  # validation's ranker: train alone
    assert keys(served) == keys(split.train) | keys(split.valid)  # the served one: train + valid, never test


class EarlyStoppingKNN(ItemKNNModel):
    """A model written before refit existed: it validates, reports best_epoch and ignores FitContext.epochs."""

    def fit(self, context: FitContext) -> dict[str, Any]:
        summary = super().fit(context)
        context.validate(lambda users: self.score(users, context.train))
        return {**summary, "best_epoch": 1}


class CannotRefitKNN(EarlyStoppingKNN):
    can_refit = False


class RefitPlugin:
    @hookimpl
    def register_models(self, register):  # type: ignore[no-untyped-def]
        register("legacy.validates", EarlyStoppingKNN)
        register("legacy.no_refit", CannotRefitKNN)


def test_a_model_that_validates_in_its_refit_is_stopped(tmp_path: Path, fusionrec_plugins) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_plugins.add(RefitPlugin(), "legacy")
    pipeline = write_pipeline(
        tmp_path, encoders=False, user="", train="{refit: true}", extra="model: {type: legacy.validates}\n"
    )
    with pytest.raises(FusionrecError, match="called validate during its refit"):
        train(pipeline, tmp_path / "run", registry)
    with pytest.raises(AssertionError, match=r"validate\(\) was called in a refit"):
        check_component("model", "legacy.validates", registry=registry)


def test_a_model_that_cannot_refit_says_so(tmp_path: Path, fusionrec_plugins) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_plugins.add(RefitPlugin(), "legacy")
    pipeline = write_pipeline(
        tmp_path, encoders=False, user="", train="{refit: true}", extra="model: {type: legacy.no_refit}\n"
    )
    with pytest.raises(ConfigError, match=r"legacy\.no_refit' cannot be refitted") as caught:
        train(pipeline, tmp_path / "run", registry)
    assert caught.value.problems[0].path == ("train", "refit")
    assert not (tmp_path / "run" / "model").exists()  # refused before anything was trained
    check_component("model", "legacy.no_refit", registry=registry)  # the contract skips the refit part


def test_models_report_what_a_refit_needs() -> None:
    assert Model.can_refit and FitContext.__dataclass_fields__["epochs"].default is None
