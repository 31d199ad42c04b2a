"""`fusionrec tune`: search ranges in YAML, a small study that writes a runnable best.yaml, resuming a study."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from train_fixtures import write_pipeline

from fusionrec.core import cli
from fusionrec.core.api import Pipeline
from fusionrec.core.api.space import read_space
from fusionrec.core.api.tune import STUDY, STUDY_NAME, tune
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import get_registry

TRAIN = "{epochs: 2, batch_size: 64, lr: {tune: log_uniform, low: 1.0e-3, high: 3.0e-2}, seed: 0}"
USER = "{type: mean, max_history: {tune: choice, values: [4, 10]}}"


def rows(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_small_study_writes_a_best_pipeline_that_runs_and_continues(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, user=USER, train=TRAIN)
    out = tmp_path / "study"
    assert cli.main(["tune", str(pipeline), "--trials", "2", "--out", str(out)]) == 0
    first = rows(out)
    assert [r["state"] for r in first] == ["COMPLETE", "COMPLETE"]
    assert {r["user.max_history"] for r in first} <= {"4", "10"}
    assert all(1e-3 <= float(r["train.lr"]) <= 3e-2 for r in first)
    assert (out / "trials.png").read_bytes()[:4] == b"\x89PNG" and "(best)" in (out / "trials.md").read_text()
    # pruning reads the per-epoch validation metric: every epoch was reported to the study
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY}")
    assert [sorted(t.intermediate_values) for t in study.trials] == [[1, 2], [1, 2]]
    # best.yaml is the best trial's pipeline: it validates, and it runs
    best = Pipeline.load(out / "best.yaml").validate()
    chosen = max(first, key=lambda r: float(r["valid ndcg@20"]))
    assert best.spec.train.lr == pytest.approx(float(chosen["train.lr"]))
    assert best.spec.user is not None and best.spec.user.params.max_history == int(chosen["user.max_history"])
    run = best.train(tmp_path / "best-run")
    assert run.metrics["valid"]["metrics"]["ndcg@20"] == pytest.approx(float(chosen["valid ndcg@20"]))
    # run again with --trials 3: the study continues (one more trial), the first two stay as they were
    result = tune(pipeline, out, trials=3)
    assert [r["trial"] for r in result.rows] == [0, 1, 2] and rows(out)[:2] == first
    # a study killed while a trial ran: that trial is tried again, with the same values, in the same folder
    killed = study.ask()
    killed.suggest_float("train.lr", 1e-3, 3e-2, log=True)
    killed.suggest_categorical("user.max_history", [4, 10])
    killed.set_user_attr("run", "trials/killed")
    result = tune(pipeline, out, trials=4)
    # (the retry may be pruned: from the fourth trial on, the median pruner compares it with the three before)
    assert [r["state"] for r in result.rows][:4] == ["COMPLETE"] * 3 + ["FAIL"]
    assert result.rows[4]["state"] in ("COMPLETE", "PRUNED")
    assert result.rows[3]["note"] == "killed while running; tried again" and result.rows[4]["run"] == "trials/killed"
    assert result.rows[4]["train.lr"] == result.rows[3]["train.lr"]
    # the same folder with other ranges is another study
    other = write_pipeline(tmp_path, user=USER, train=TRAIN.replace("3.0e-2", "5.0e-2"), name="other.yaml")
    with pytest.raises(FusionrecError, match="other search ranges"):
        tune(other, out, trials=5)


def test_a_bad_range_is_a_located_config_error(tmp_path: Path) -> None:
    bad = write_pipeline(tmp_path, user=USER, train="{epochs: 1, lr: {tune: log_uniform, low: 0, high: 1.0e-2}}")
    with pytest.raises(ConfigError, match=r"pipeline.yaml:\d+: train.lr: a log_uniform range needs low > 0"):
        read_space(bad, get_registry())
    typo = write_pipeline(tmp_path, user="{type: mean, max_history: {tune: choise, values: [4]}}", name="t.yaml")
    with pytest.raises(ConfigError, match=r"user\.max_history: tune: 'choise' is not a kind of search range"):
        read_space(typo, get_registry())
    # each value a range can give is validated by the component's own parameter model
    rejected = write_pipeline(tmp_path, user="{type: mean, max_history: {tune: int, low: 0, high: 8}}", name="r.yaml")
    with pytest.raises(ConfigError, match=r"user.max_history: the range can give 0, which fails: user.max_history"):
        read_space(rejected, get_registry())
    # a problem of the pipeline itself (not of a range) is said once, as itself, not once per range end
    broken = write_pipeline(tmp_path, user=USER, train=TRAIN, name="broken.yaml")
    broken.write_text(broken.read_text().replace("data/interactions.csv", "data/missing.csv"))
    with pytest.raises(ConfigError) as caught:
        read_space(broken, get_registry())
    assert len(caught.value.problems) == 1 and "missing.csv" in caught.value.problems[0].message
    assert "the range can give" not in str(caught.value)
    none = write_pipeline(tmp_path, name="none.yaml")
    with pytest.raises(ConfigError, match="declares no search range"):
        read_space(none, get_registry())


def test_the_default_space_fills_ranges_the_components_have(tmp_path: Path) -> None:
    plain = write_pipeline(tmp_path, user="{type: transformer}")
    names = {r.name: r for r in read_space(plain, get_registry(), default=True).ranges}
    assert set(names) == {"train.lr", "train.loss", "fuser.dim", "fuser.dropout", "user.dropout", "user.max_history"}
    assert names["train.lr"].kind == "log_uniform"
    ids_only = write_pipeline(tmp_path, user="{type: mean}", encoders=False, name="ids.yaml")
    assert {r.name for r in read_space(ids_only, get_registry(), default=True).ranges} == {
        "train.lr", "train.loss", "train.dim", "user.max_history"
    }  # fmt: skip


def test_trials_are_pruned_from_the_second_epoch_on(tmp_path: Path) -> None:
    """The study's pruner (docs/tuning.md): from the fourth trial and the second epoch on, never on the first epoch
    (epochs are reported as steps 1, 2, …)."""
    from fusionrec.core.api.tune import _open_study

    pipeline = write_pipeline(tmp_path, user=USER, train=TRAIN)
    study, _ = _open_study(tmp_path, read_space(pipeline, get_registry()), "ndcg@20", 0)
    for _ in range(3):
        trial = study.ask()
        trial.report(0.5, 1)
        trial.report(0.5, 2)
        study.tell(trial, 0.5)
    slow = study.ask()
    slow.report(0.01, 1)
    assert not slow.should_prune()  # worse than every earlier trial, but only one epoch in
    slow.report(0.01, 2)
    assert slow.should_prune()
