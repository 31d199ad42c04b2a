"""What the stages of a run share: the parsed pipeline, the loaded data and its features, the run directory.

:class:`RunContext` is filled in stage by stage (:mod:`fusionrec.core.engine.stages`): the ``data`` stage sets
``loaded`` and ``split``, ``features`` sets ``prepared``, ``train`` sets ``trained``, and so on. Each thing is
computed once per process: the YAML is parsed once (by the caller), the dataset loaded once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from fusionrec.core.assembly import loading
from fusionrec.core.assembly.config import PipelineSpec
from fusionrec.core.data import SplitData
from fusionrec.core.engine.rundir import RunDir
from fusionrec.core.engine.two_tower import Features, Modalities
from fusionrec.registry import Registry

if TYPE_CHECKING:
    from fusionrec.core.engine.distributed import Ranks
    from fusionrec.core.engine.learners import Trained
    from fusionrec.core.engine.two_stage import TwoStage

Event = Callable[[str, dict[str, Any]], None]
"""``on_event(name, facts)``: what a caller (the CLI) is told as the run goes (``data``, ``features``, ``train`` …)."""


@dataclass
class Prepared:
    """A pipeline's features, ready to train on.

    Attributes:
        features: fixed vectors by modality: frozen encoders' (and, for a `model` section, every encoder's).
        inputs: trainable encoders with every item's preprocessed input
            (:class:`~fusionrec.core.engine.encoder_inputs.EncoderInputs`), trained end to end by the two-tower engine.
    """

    loaded: loading.Loaded
    split: SplitData
    features: Features
    feature_seconds: float
    features_run: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> Modalities:
        """Every modality the item tower reads, in the pipeline's ``encoders`` order."""
        both: dict[str, Any] = {**self.features, **self.inputs}
        return {key: both[key] for key in self.loaded.spec.encoders if key in both}

    @property
    def n_users(self) -> int:
        return self.loaded.data.n_users

    @property
    def n_items(self) -> int:
        return self.loaded.data.n_items


def prepare(
    loaded: loading.Loaded, split: SplitData, registry: Registry, *, progress: bool, console: Console | None
) -> Prepared:
    """Compute (or read from the cache) the encoders' features of loaded data."""
    from fusionrec.core.engine import encoder_inputs, features

    computed = None
    if loaded.spec.encoders:
        if loaded.spec.model is None:
            # frozen encoders are read from the feature cache; trainable ones (cnn, rnn) are fitted and every item's
            # input preprocessed once here, and the item tower trains them end to end with the towers
            computed = encoder_inputs.training_features(loaded, registry, progress=progress, console=console)
        else:
            # a `model` section (a baseline) takes fixed vectors: trainable encoders are encoded once with their
            # fitted, untrained weights
            computed = features.pipeline_features(
                loaded, registry, progress=progress, console=console, trainable="encode"
            )
    if computed is None:
        return Prepared(loaded, split, {}, 0.0)
    vectors = {key: (m.vectors, m.present) for key, m in computed.matrices.items()}
    return Prepared(loaded, split, vectors, computed.seconds, computed, dict(computed.inputs))


@dataclass
class RunContext:
    """One run of a pipeline in one process.

    Attributes:
        spec: the pipeline, parsed and validated once.
        registry: where its components come from.
        run: the run directory being written.
        progress: show progress bars (on ``console``).
        stop_after: stop after this many training epochs in this call (tests simulate a kill with it).
        rerank: ``auto`` (apply the ranker when its validation verdict is positive), ``always`` or ``never``.
        on_event: told what each stage found (the CLI prints it).
        sample_users: users whose recommendations the report shows (default: the first user).
        ranks: under torchrun, this process's rank (``None`` in one process); only rank 0 touches ``run``.
        judged_ranker: with ``train.refit``, the ranker fitted for the train-only model (validation's path).
    """

    spec: PipelineSpec
    registry: Registry
    run: RunDir
    progress: bool = False
    console: Console | None = None
    stop_after: int | None = None
    rerank: str = "auto"
    on_event: Event | None = None
    sample_users: tuple[str, ...] = ()
    loaded: loading.Loaded | None = None
    split: SplitData | None = None
    prepared: Prepared | None = None
    trained: Trained | None = None
    served: TwoStage | None = None
    judged_ranker: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    ranks: Ranks | None = None

    @property
    def pipeline(self) -> Path | None:
        return self.spec.file

    def tell(self, name: str, **facts: Any) -> None:
        if self.on_event is not None:
            self.on_event(name, facts)

    def need_loaded(self) -> loading.Loaded:
        assert self.loaded is not None and self.split is not None, "the data stage runs first"
        return self.loaded

    def need_split(self) -> SplitData:
        assert self.split is not None, "the data stage runs first"
        return self.split

    def need_prepared(self) -> Prepared:
        assert self.prepared is not None, "the features stage runs first"
        return self.prepared
