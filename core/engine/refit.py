"""``train.refit``: choose on validation, then retrain on train + valid and score test with that model.

The protocol every number in fusionrec follows (and the peers' runner too): hyperparameters and the number of
epochs are chosen on validation only, with a model trained on train; then a fresh model with the same settings
and seed is trained on train + valid for the chosen number of epochs (the best epoch), without validating (it has
seen validation) and without choosing among epochs (the last epoch's weights), and test is scored with it.
Validation metrics stay those of the train-only model.

- Two-tower: a second :class:`~fusionrec.core.engine.trainer.Trainer` over the train + valid histories (stage
  ``refit``, files ``refit-checkpoint-<epoch>.pt`` and ``refit-epochs.jsonl``), resumable after a kill like the
  first. The run's item vectors, user tower and index are the refit model's: that is what ``fusionrec recommend``
  serves.
- ``model:`` plugins: a fresh model fitted with ``FitContext(train=train + valid, epochs=best_epoch)`` (see
  :mod:`fusionrec.core.model`); models without epochs just fit on train + valid. The saved ``model/`` is the refit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from fusionrec.core.assembly.config import PipelineSpec
from fusionrec.core.engine.trainer import EPOCHS, REFIT_PREFIX, Progress, Trainer
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.core.model import FitContext, Model, ScoreFn

if TYPE_CHECKING:
    from fusionrec.core.engine.distributed import Ranks
    from fusionrec.core.engine.rundir import RunDir
    from fusionrec.core.engine.two_tower import Histories, TwoTower
    from fusionrec.registry import Registry

STAGE = "refit"
"""The run manifest's stage of the refit (its checkpoint, status and summary)."""
LOG = REFIT_PREFIX + EPOCHS
"""The refit's per-epoch log (loss and seconds; no validation)."""
DATA = "train+valid"


def check_model(model: Model, spec: PipelineSpec) -> None:
    """Refuse a refit of a model that declares it cannot be refitted, before anything is trained.

    Raises:
        ConfigError: at ``train.refit``.
    """
    if not getattr(type(model), "can_refit", True):
        name = spec.model.type if spec.model is not None else type(model).__name__
        raise ConfigError.at(
            ("train", "refit"),
            f"model '{name}' cannot be refitted on train + valid (it declares can_refit = False): it has no way to "
            "train a chosen number of epochs without validating. Set `train.refit: false` for it.",
            file=spec.file,
        )


def selected_epochs(name: str, summary: Mapping[str, Any]) -> int | None:
    """The number of epochs validation chose (``best_epoch`` of a model's fit summary); ``None`` without epochs.

    Raises:
        FusionrecError: ``best_epoch`` is there but not a whole number ≥ 1.
    """
    value = summary.get("best_epoch")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FusionrecError(
            f"model '{name}': its fit summary's best_epoch is {value!r}; a refit trains that many epochs, so it must "
            "be a whole number ≥ 1 (the epoch validation chose)"
        )
    return value


def refit_model(
    spec: PipelineSpec,
    registry: Registry,
    context: FitContext,
    summary: Mapping[str, Any],
    data: pd.DataFrame,
    run: RunDir,
) -> tuple[Model, dict[str, Any]]:
    """Fit a fresh model of ``spec.model`` on ``data`` (train + valid) for the epochs its first fit chose.

    Args:
        context: the first fit's context; the refit's is a copy with ``train``, ``epochs``, ``validate`` and ``log``
            replaced.
        summary: the first fit's summary (its ``best_epoch``, if any, is the number of epochs).

    Returns:
        The refitted model and the refit's summary (``epochs``, ``data``, ``seconds`` and the model's own summary).

    Raises:
        FusionrecError: the model validated during its refit, or trained another number of epochs than asked.
    """
    assert spec.model is not None
    name = spec.model.type
    epochs = selected_epochs(name, summary)

    def no_validation(score: ScoreFn) -> dict[str, float]:
        raise FusionrecError(
            f"model '{name}' called validate during its refit on train + valid: a refit trains exactly "
            f"FitContext.epochs ({epochs}) epochs without validating, since the model has seen the validation part. "
            "Make fit() honour context.epochs (docs/plugins/hooks.md#register_models), or declare can_refit = False "
            "on the model class"
        )

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    model = registry.build(spec.model)
    refit_context = replace(context, train=data, validate=no_validation, epochs=epochs, log=records.append)
    result = dict(model.fit(refit_context))
    ran = result.get("epochs")
    if epochs is not None and isinstance(ran, int) and ran != epochs:
        raise FusionrecError(
            f"model '{name}' trained {ran} epochs in its refit, asked {epochs} (FitContext.epochs): a refit must train "
            "exactly the number of epochs validation chose"
        )
    if records:
        run.write_text(LOG, "".join(json.dumps(r, default=float) + "\n" for r in records))
    seconds = round(time.perf_counter() - started, 3)
    return model, {"epochs": epochs, "data": DATA, "seconds": seconds, "summary": result}


def refit_two_tower(
    build: Callable[[], TwoTower],
    spec: PipelineSpec,
    histories: Histories,
    run: RunDir,
    epochs: int,
    progress: Callable[[int], Progress | None] | None,
    budget: int | None,
    ranks: Ranks | None = None,
) -> tuple[TwoTower, dict[str, Any]] | None:
    """Train a fresh two-tower (``build()``, seeded like the first) on ``histories`` (train + valid) for ``epochs``
    epochs, continuing the run's refit checkpoint if there is one.

    Args:
        budget: train at most this many epochs in this call (``None``: to the end); ``None`` is returned when the
            refit is not finished then.
        ranks: under torchrun, this process's rank (every rank calls this; only rank 0 writes the run).

    Returns:
        The refitted model (on the CPU, in eval mode) and the refit's summary, or ``None`` when interrupted.
    """
    trainer = Trainer(
        build(), histories, spec.train, run, None, stage=STAGE, prefix=REFIT_PREFIX, epochs=epochs, ranks=ranks
    )
    trainer.resume()
    until = trainer.state.epoch + budget if budget is not None else None
    state = trainer.fit(progress, until=until)
    if not state.stopped:
        if trainer.writes:
            run.mark(STAGE, "interrupted", epoch=state.epoch)
        return None
    summary = {
        "epochs": state.epoch,
        "data": DATA,
        "loss": state.log[-1]["loss"] if state.log else None,
        "seconds": round(sum(float(r.get("seconds", 0.0)) for r in state.log), 3),
    }
    if trainer.writes:
        run.mark(STAGE, "done", summary=summary)
    return trainer.model.cpu().eval(), summary


def protocols(protocol: Mapping[str, Any], epochs: int | None) -> dict[str, dict[str, Any]]:
    """Each part's evaluation protocol with the model that produced its numbers."""
    chosen = f", epoch {epochs} chosen on validation recall@20" if epochs else ""
    length = f" for {_epochs(epochs)}" if epochs else " (no epochs to choose)"
    return {
        "valid": {**protocol, "model": f"trained on train{chosen}"},
        "test": {**protocol, "model": f"refit on {DATA}{length}, same settings and seed"},
    }


def line(refit: Mapping[str, Any]) -> str:
    """One line saying what the refit did, for ``fusionrec train`` and ``fusionrec run``."""
    epochs = refit.get("epochs")
    length = f"for {_epochs(epochs)} (the best epoch on validation)" if epochs else "(a model without epochs)"
    return (
        f"refit: retrained from scratch on {DATA} {length}; test metrics and the saved model are the refit's, "
        "validation metrics the train-only model's"
    )


def _epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")
