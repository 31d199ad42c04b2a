"""Whether a valid pipeline can run: what ``fusionrec validate`` checks beyond each section's own parameters.

A pipeline file can be valid section by section and still not runnable (no ``user`` section for the two-tower,
encoders with nothing to fuse them). :func:`check_runnable` finds every such problem at once, by file, line and
key path, so ``validate`` reports what ``run`` would refuse, and ``run`` refuses before it writes anything.
"""

from __future__ import annotations

from fusionrec.core.assembly.config import PipelineSpec
from fusionrec.core.errors import ConfigError, KeyPath, Problem


def runnable_problems(spec: PipelineSpec) -> list[Problem]:
    """Every reason ``spec`` cannot run, each at its key path and line."""
    problems: list[Problem] = []

    def add(path: KeyPath, message: str) -> None:
        problems.append(Problem(path, message, spec.line_of(path)))

    if spec.data is None:
        add(
            ("data",),
            "the pipeline has no `data` section, so there is nothing to train on; add one, e.g. "
            "`data: {type: movielens, path: ml-latest-small}` (`fusionrec plugins` lists the datasets).",
        )
    if spec.model is None:
        if spec.user is None:
            add(
                ("user",),
                "the pipeline has no `user` section: the two-tower model needs a user tower, e.g. "
                "`user: {type: transformer}` (or a `model:` section for a baseline; `fusionrec plugins` lists both).",
            )
        if spec.encoders and spec.fuser is None:
            add(
                ("fuser",),
                f"the pipeline has encoders ({', '.join(spec.encoders)}) but no `fuser` section to combine "
                "their vectors; add one, e.g. `fuser: {type: attention, dim: 64}` (`fuser: {type: mean, dim: 64}` "
                "for one modality).",
            )
        if spec.fuser is not None and not spec.encoders:
            add(
                ("fuser",),
                "the pipeline has a fuser but no encoders, so there is nothing to fuse; add an "
                "`encoders` section, or remove `fuser` to train on item ids only.",
            )
        if spec.fuser is None and not spec.encoders and not spec.train.item_ids:
            add(
                ("train", "item_ids"),
                "the item tower has nothing to read: no encoders and `train.item_ids: false`; "
                "add encoders and a fuser, or set `train.item_ids: true`.",
            )
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def check_runnable(spec: PipelineSpec) -> None:
    """Raise every reason ``spec`` cannot run at once.

    Raises:
        ConfigError: one problem per reason, each with its key path and line.
    """
    problems = runnable_problems(spec)
    if problems:
        raise ConfigError(problems, file=spec.file)
