"""fusionrec's public Python API: the command line and the server stand on it, and so can a notebook.

.. code-block:: python

    from fusionrec.core.api import Pipeline, Run

    pipeline = Pipeline.load("examples/quickstart.yaml").validate()
    run = pipeline.run("runs/quickstart")          # every stage; a finished stage is not redone
    run.metrics["test"]["metrics"]["recall@20"]    # the served path's test metrics
    run.recommend(["1"], k=10)                     # the same two-stage path evaluation measured
    run.recommend_as_of("test", ["1"], k=20)       # the very list evaluation scored for user 1's test items
    run.recommend_history(["1", "50"], k=5)        # a session's history, for a user the run does not know
    run.similar("1", k=5)
    Run.open("runs/quickstart").evaluate()         # metrics, after checking every artifact

Everything raises :class:`~fusionrec.core.errors.FusionrecError` (or a subclass) for a user's mistake, with a
message that says what and where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from fusionrec.core.assembly import loading
from fusionrec.core.assembly.config import PipelineSpec, dumps_pipeline, load_pipeline, parse_pipeline
from fusionrec.core.assembly.runnable import check_runnable
from fusionrec.core.engine import distributed, stages
from fusionrec.core.engine.context import Event, RunContext
from fusionrec.core.engine.learners import Trained
from fusionrec.core.engine.recommend import Recommendation, Recommender, write_csv
from fusionrec.core.engine.report import metric_notes, metric_table
from fusionrec.core.engine.rundir import CONFIG, RunDir, RunError, writer_lock
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import Registry, get_registry

__all__ = ["Pipeline", "Recommendation", "Run", "metric_notes", "metric_table"]


class Pipeline:
    """A validated pipeline: its spec, and how to run it.

    Attributes:
        spec: the parsed pipeline (every default resolved).
        registry: where its components come from.
    """

    def __init__(self, spec: PipelineSpec, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry

    @classmethod
    def load(
        cls, source: str | Path | Mapping[str, Any], registry: Registry | None = None, *, base_dir: Path | None = None
    ) -> Pipeline:
        """Parse a pipeline file (a path) or a mapping (e.g. built in a notebook); relative paths in a mapping
        resolve against ``base_dir`` (default: the working directory).

        Raises:
            ConfigError: every problem of the file at once, each with its key path (and line, for a file).
        """
        registry = registry if registry is not None else get_registry()
        if isinstance(source, Mapping):
            import yaml

            text = yaml.safe_dump(dict(source), sort_keys=False)
            return cls(parse_pipeline(text, base_dir=base_dir or Path.cwd(), registry=registry), registry)
        return cls(load_pipeline(Path(source), registry), registry)

    @property
    def path(self) -> Path | None:
        return self.spec.file

    def validate(self) -> Pipeline:
        """Check that the pipeline can run (sections a stage needs, paths, modalities), beyond its schema.

        Raises:
            ConfigError: every problem at once, by file and key path.
        """
        check_runnable(self.spec)
        return self

    def stages(self, until: str = "report") -> list[stages.PlannedStage]:
        """The stage table: each stage, its component(s) and plugin(s), whether it runs (the list that runs)."""
        return stages.plan(self.spec, self.registry, until)

    def resolved(self) -> str:
        """The pipeline as YAML with every default filled in."""
        return dumps_pipeline(self.spec)

    def run(
        self,
        out: str | Path | None = None,
        *,
        until: str = "report",
        resume: bool = True,
        fresh: bool = False,
        redo: str | None = None,
        rerank: str = "auto",
        progress: bool = False,
        console: Console | None = None,
        on_event: Event | None = None,
        sample_users: Sequence[str] = (),
        stop_after: int | None = None,
    ) -> Run:
        """Run the stages up to ``until`` into the run directory ``out`` (default ``runs/<pipeline name>``).

        Args:
            resume: continue the run there (what holds for the current pipeline is reused); false: ``out`` must be
                new or empty.
            fresh: start over in ``out`` (the old run is replaced once the new one has its manifest).
            redo: force this stage and every one after it.
            rerank: ``auto`` (apply the ranker when its validation verdict is positive), ``always``, ``never``.
            on_event: told what each stage found (``config``, ``data``, ``features``, ``train``, ``rerank``,
                ``evaluate``, ``report``), and ``epoch`` after each two-tower training epoch (``record``: its loss
                and validation metrics, as in ``epochs.jsonl``).
            stop_after: stop after this many training epochs (a simulated kill, for tests).

        Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this: the two-tower trains with
        DistributedDataParallel on all ranks, and rank 0 alone writes ``out`` and runs the other stages; the other
        ranks return a :class:`Run` with ``rank`` > 0 and nothing in it.

        Raises:
            ConfigError: the pipeline cannot run (before anything is written into ``out``); a ``model:`` section
                under torchrun (baselines train in one process).
            RunError: ``out`` holds another run and neither ``resume`` nor ``fresh``; another process is writing it.
        """
        self.validate()
        target = Path(out) if out is not None else Path("runs") / (self.path.stem if self.path else "pipeline")
        world = distributed.world_size()
        if world > 1 and self.spec.model is not None:
            raise ConfigError.at(
                ("model",),
                f"model '{self.spec.model.type}' trains in one process, but WORLD_SIZE={world} (torchrun): only the "
                "two-tower model (fuser + user sections) trains distributed. Run this pipeline without torchrun.",
                file=self.path,
            )
        ranks = distributed.start(self.spec.train.device)
        try:
            if ranks is not None and not ranks.main:
                ctx = RunContext(self.spec, self.registry, RunDir(target, {}), stop_after=stop_after, ranks=ranks)
                stages.follow(ctx)  # trains beside rank 0; RunDir(target, {}) is never written
                return Run(ctx.run, ctx, finished=True)
            return self._run(
                target, ranks, until=until, resume=resume, fresh=fresh, redo=redo, rerank=rerank, progress=progress,
                console=console, on_event=on_event, sample_users=sample_users, stop_after=stop_after,
            )  # fmt: skip
        except BaseException as error:
            if ranks is not None:
                ranks.announce(train=False, error=str(error) or type(error).__name__)  # the others stop too
            raise
        finally:
            if ranks is not None:
                distributed.stop(ranks)

    def _run(
        self,
        target: Path,
        ranks: distributed.Ranks | None,
        *,
        until: str,
        resume: bool,
        fresh: bool,
        redo: str | None,
        rerank: str,
        progress: bool,
        console: Console | None,
        on_event: Event | None,
        sample_users: Sequence[str],
        stop_after: int | None,
    ) -> Run:
        with writer_lock(target):
            seed = self.spec.train.seed
            rundir, diff = RunDir.create(
                target, dumps_pipeline(self.spec), pipeline=self.path, seed=seed, resume=resume, fresh=fresh
            )
            ctx = RunContext(
                self.spec, self.registry, rundir, progress=progress, console=console, stop_after=stop_after,
                rerank=rerank, on_event=on_event, sample_users=tuple(sample_users), ranks=ranks,
            )  # fmt: skip
            if diff:
                ctx.tell("config", diff=diff)
            finished = stages.execute(ctx, until=until, redo=redo)
        return Run(rundir, ctx, finished=finished)

    def train(self, out: str | Path | None = None, **options: Any) -> Run:
        """Run the stages up to ``evaluate`` (no report): what ``fusionrec train`` does."""
        return self.run(out, until="evaluate", **options)


class Run:
    """A run directory: its metrics, and recommendations through the path those metrics measured.

    Attributes:
        dir: the run directory and its manifest.
        finished: whether every stage ran (false when training was stopped early).
    """

    def __init__(self, rundir: RunDir, ctx: RunContext, *, finished: bool = True) -> None:
        self.dir = rundir
        self._ctx = ctx
        self.finished = finished
        self._recommender: Recommender | None = None

    @classmethod
    def open(cls, path: str | Path, registry: Registry | None = None, *, rerank: str = "auto") -> Run:
        """Open a finished run: its pipeline (``config.yaml``), data and artifacts, every one checked against the
        manifest's checksums.

        Raises:
            RunError: not a run, not finished, or an artifact missing or corrupted.
        """
        registry = registry if registry is not None else get_registry()
        rundir = RunDir.open(Path(path))
        spec = load_pipeline(rundir.file(CONFIG), registry)
        # the stages are checked as they were run (with the --rerank mode evaluate ran with), then served with `rerank`
        ctx = RunContext(spec, registry, rundir, rerank=rundir.stage("evaluate").get("rerank", "auto"))
        for stage in stages.STAGES:
            if stage.restore is None or not stage.applies(spec):
                continue
            why = stages.not_done_because(ctx, stage, inputs=False)
            if why is not None:
                pipeline = rundir.manifest.get("pipeline") or "PIPELINE.yaml"
                raise RunError(
                    f"{path}: the run's '{stage.name}' stage is not done: {why}. Finish or repair it with "
                    f"`fusionrec run {pipeline} --out {path}` (it redoes what does not hold)."
                )
            if ctx.loaded is None:
                ctx.loaded = loading.load_data(spec, registry)
                ctx.split = loading.run_split(ctx.loaded)
            stage.restore(ctx)
        stages.set_rerank(ctx, rerank)
        return cls(rundir, ctx)

    # what the run measured ---------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def rank(self) -> int:
        """This process's rank under torchrun (0 in one process); a rank > 0 trained beside rank 0 and holds no
        metrics: rank 0 wrote the run."""
        return self._ctx.ranks.rank if self._ctx.ranks is not None else 0

    @property
    def spec(self) -> PipelineSpec:
        return self._ctx.spec

    @property
    def metrics(self) -> dict[str, Any]:
        """``valid`` and ``test`` (the served path), ``exact`` (the same with exact search), ``index`` (its
        recall against exact search) and ``rerank`` (the ranker's verdict), as in ``metrics.json``."""
        return self._ctx.metrics

    @property
    def summary(self) -> dict[str, Any]:
        """The train stage's summary: epochs, parameters, refit …"""
        trained: Trained | None = self._ctx.trained
        return trained.summary if trained is not None else self.dir.stage("train")

    @property
    def verdict(self) -> str | None:
        """Whether reranking helped, in one line (``None`` without a ranker)."""
        rerank = self.metrics.get("rerank")
        return rerank.get("verdict") if rerank else None

    def evaluate(self) -> dict[str, Any]:
        """The run's metrics, after checking every artifact against the manifest.

        Raises:
            RunError: an artifact is missing or changed.
        """
        problems = self.dir.verify()
        if problems:
            raise RunError(f"{self.path}: the run directory does not match its manifest: {'; '.join(problems)}")
        metrics: dict[str, Any] = self.dir.read_json(stages.METRICS)
        return metrics

    # recommendations ---------------------------------------------------------------------------------------------

    @property
    def recommender(self) -> Recommender:
        """The run's :class:`Recommender` (built once)."""
        if self._recommender is None:
            ctx = self._ctx
            if ctx.trained is None or ctx.loaded is None:
                raise RunError(f"{self.path}: the run has not finished; nothing to recommend from")
            self._recommender = Recommender(ctx.loaded.data, stages.served_path(ctx), ctx.trained.modalities)
        return self._recommender

    def recommend(self, user_ids: Sequence[Any], k: int = 10) -> list[list[Recommendation]]:
        """Top-``k`` unseen items for each user (original ids), best first."""
        return self.recommender.recommend(user_ids, k)

    def recommend_history(
        self, item_ids: Sequence[Any], k: int = 10, exclude: Sequence[Any] = ()
    ) -> list[Recommendation]:
        """Top-``k`` items for a history given now (original item ids, newest last)."""
        return self.recommender.recommend_history(item_ids, k, exclude)

    def similar(self, item_id: Any, k: int = 10) -> list[Recommendation]:
        """The ``k`` items closest to ``item_id`` (itself excluded)."""
        return self.recommender.similar_items(item_id, k)

    def item(self, item_id: Any) -> dict[str, Any]:
        """An item's metadata (title, text, image file, per-modality weights)."""
        return self.recommender.item(item_id)

    def recommend_as_of(
        self, part: str, user_ids: Sequence[Any], k: int = 10, exact: bool = False
    ) -> list[list[Recommendation]]:
        """The lists evaluation scored for ``part`` (``valid`` or ``test``): histories cut where that part starts
        (train for valid, train + valid for test), the same items excluded and, for the cold-item split, the same
        candidates, through the served path (``exact``: with an exact search, the ``exact`` row of the metrics).
        Scored against the split's ``test.csv`` (``fusionrec data split``) they give ``metrics.json``'s numbers.

        Raises:
            FusionrecError: ``part`` is not valid or test, or an unknown user id.
        """
        if part not in stages.PARTS:
            raise FusionrecError(f"as of {part!r}: give 'valid' or 'test' (the part whose lists evaluation scored)")
        ctx = self._ctx
        stage = stages.evaluated_path(ctx, part, exact)  # type: ignore[arg-type]
        return self.recommender.recommend_as_of(ctx.need_split(), part, user_ids, k, stage)  # type: ignore[arg-type]

    def write_recommendations(
        self, user_ids: Sequence[Any], k: int, target: str | Path, *, as_of: str | None = None, exact: bool = False
    ) -> None:
        """``userId,itemId,rank`` for these users into a CSV file, atomically: what :meth:`recommend` gives, or with
        ``as_of``, what :meth:`recommend_as_of` gives (the lists evaluation scored)."""
        if as_of is None and exact:
            raise FusionrecError("exact search applies to the lists evaluation scored: give as_of='test' or 'valid'")
        recommend = None
        if as_of is not None:
            part = as_of

            def recommend(users: list[str], k: int) -> list[list[Recommendation]]:
                return self.recommend_as_of(part, users, k, exact)

        write_csv(self.recommender, [str(u) for u in user_ids], k, Path(target), recommend=recommend)

    @property
    def path_description(self) -> str:
        """Which path produces the lists: the retriever, and the ranker when applied."""
        return stages.describe_path(self.recommender.stage)
