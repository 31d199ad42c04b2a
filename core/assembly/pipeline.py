"""Pipeline assembly: which stage runs which component.

This resolves every stage of a validated pipeline to its component and plugin, in run order, for the table that
``fusionrec run`` prints before it runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusionrec.core.assembly.config import PipelineSpec
from fusionrec.registry import Registry

STAGES: tuple[tuple[str, str], ...] = (
    ("data", "data"),
    ("features", "encoders"),
    ("train", "fuser"),
    ("user tower", "user"),
    ("model", "model"),
    ("index", "retriever"),
    ("rerank", "ranker"),
)
"""Stage name and the pipeline section that configures it, in run order."""

IMPLEMENTED_STAGES: frozenset[str] = frozenset(
    {"data", "features", "train", "user tower", "model", "index", "rerank", "evaluate"}
)
"""Stages this release can execute (all of them: ``fusionrec run`` runs every configured stage)."""


@dataclass(frozen=True)
class Stage:
    """One stage of a run, as :func:`plan` resolves it."""

    name: str
    component: str
    plugin: str
    ready: bool

    @property
    def configured(self) -> bool:
        return self.component != "-"

    @property
    def status(self) -> str:
        if not self.configured:
            return "not configured"
        return "runs" if self.ready else "validated (not runnable yet)"


def plan(spec: PipelineSpec, registry: Registry) -> list[Stage]:
    """The stages of ``spec`` in run order, each with its component and the plugin that provides it."""
    stages = []
    for name, section in STAGES:
        if section == "encoders":
            specs = [(f"{modality}: ", enc) for modality, enc in spec.encoders.items()]
        else:
            one = getattr(spec, section)
            specs = [("", one)] if one is not None else []
        if not specs:
            stages.append(Stage(name, "-", "-", False))
            continue
        components = ", ".join(f"{label}{s.kind} '{s.type}'" for label, s in specs)
        plugins = ", ".join(sorted({registry.table(s.kind)[s.type].plugin for _, s in specs}))
        stages.append(Stage(name, components, plugins, name in IMPLEMENTED_STAGES))
    evaluate = spec.evaluate
    metrics = ", ".join(evaluate.metrics) if evaluate else "recall@10, recall@20, ndcg@10, ndcg@20 (default)"
    stages.append(Stage("evaluate", metrics, "-", "evaluate" in IMPLEMENTED_STAGES))
    return stages
