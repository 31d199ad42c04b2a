"""Pipeline files: YAML → :class:`PipelineSpec`, with every problem reported by file, key path and line.

Only ``yaml.SafeLoader`` is used: no tag can import or run code. Relative paths in parameters resolve against the
pipeline file's folder. A spec round-trips: ``parse(dump(spec)) == spec``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from fusionrec.core.errors import ConfigError, KeyPath, Problem, did_you_mean
from fusionrec.core.params import ComponentSpec, ConfigPath, Params
from fusionrec.registry import Registry, get_registry
from fusionrec.registry.specs import SpecBuilder

SCHEMA_VERSION = 1

COMPONENT_SECTIONS: dict[str, str] = {
    "data": "dataset",
    "fuser": "fuser",
    "user": "user_tower",
    "model": "model",
    "retriever": "retriever",
    "ranker": "ranker",
}
"""Top-level sections that hold one component, and the kind of that component."""

MODALITY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
METRIC_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_.]*)@(?P<k>[1-9][0-9]*)$")


class TrainConfig(Params):
    """Training settings (section ``train``)."""

    epochs: int = Field(20, ge=1, description="Maximum number of passes over the training interactions.")
    batch_size: int = Field(1024, ge=1, description="Training examples (target interactions) per optimisation step.")
    lr: float = Field(1.0e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    loss: Literal["sampled_softmax", "softmax", "bpr"] = Field(
        "sampled_softmax",
        description="sampled_softmax: softmax over the batch's other targets as negatives, with the logQ popularity "
        "correction; softmax: over the whole catalogue; bpr: one uniformly sampled negative per positive.",
    )
    temperature: float = Field(
        0.1, gt=0, description="Divides the scores inside the softmax losses (ignored by bpr unless normalize)."
    )
    normalize: bool = Field(
        True, description="L2-normalise user and item vectors during training and retrieval (cosine scores)."
    )
    item_ids: bool = Field(
        False,
        description="Add a learned item-id embedding to each item's fused content vector (collaborative signal; "
        "items never seen in training keep their content vector).",
    )
    dim: int = Field(64, gt=0, description="Size of the item vectors when the pipeline has no fuser (ids only).")
    patience: int = Field(3, ge=1, description="Stop after this many epochs without a better validation Recall@20.")
    refit: bool = Field(
        False,
        description="After training on train with early stopping and selection on validation, retrain from scratch "
        "(same settings and seed) on train + valid for the selected number of epochs (the best epoch), without "
        "validation, and score test and save that model; validation metrics stay the train-only model's (the "
        "refit has seen validation). Applies to `model:` sections too, and to a `ranker` (fitted on the train-only "
        "model's candidates for validation, then refitted on the refit model's over train + valid).",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="Seed for every random choice (same seed → same metrics); 0 to 2^63 − 1, what torch accepts.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when available.")


class FeaturesConfig(Params):
    """Feature extraction settings (section ``features``): how, not what, so none of them changes a vector."""

    cache: ConfigPath | None = Field(
        None,
        description="Folder of the feature cache; null: $FUSIONREC_CACHE, else ~/.cache/fusionrec/features.",
    )
    batch_size: int = Field(32, ge=1, description="Items per encoder forward pass.")
    num_workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader worker processes preprocessing items (image decoding); 0: in the main one; null: "
        "auto, 0 on machines with up to 2 CPUs (a worker would take time from torch's threads), else up to 4.",
    )

    def workers(self) -> int:
        """The number of worker processes to use: :attr:`num_workers`, or the automatic choice when null."""
        if self.num_workers is not None:
            return self.num_workers
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 0 if cpus <= 2 else min(4, cpus - 2)

    threads: int | None = Field(None, ge=1, description="torch intra-op threads while encoding; null: torch's default.")


class EvaluateConfig(Params):
    """Evaluation settings (section ``evaluate``)."""

    metrics: tuple[str, ...] = Field(
        ("recall@10", "recall@20", "ndcg@10", "ndcg@20"), description="Metrics as name@K, e.g. recall@20."
    )
    protocol: Literal["full"] = Field("full", description="full: rank all items, known positives masked.")
    candidates: int = Field(
        200,
        ge=1,
        description="Candidates the retriever passes to the ranker, per user (two-stage recommend and reranked "
        "evaluation).",
    )
    bootstrap: int = Field(
        1000, ge=0, description="Bootstrap resamples of the evaluated users for the 95% intervals; 0: none."
    )
    ranker_holdout: int = Field(
        3,
        ge=1,
        description="The ranker learns from a time slice of train: each user's last ranker_holdout interactions are "
        "its labels, the model's candidates for the history before them its pairs (never valid or test).",
    )
    ranker_recent: int = Field(
        10, ge=1, description="The user's last items the ranker's similarity and tag-overlap features compare with."
    )


SETTINGS_SECTIONS: dict[str, type[Params]] = {
    "features": FeaturesConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}
SECTIONS: tuple[str, ...] = (
    "fusionrec",
    "data",
    "encoders",
    "features",
    "fuser",
    "user",
    "model",
    "train",
    "retriever",
    "ranker",
    "evaluate",
)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline file. Sections left out of the file are ``None`` (``encoders``: empty)."""

    data: ComponentSpec | None = None
    encoders: dict[str, ComponentSpec] = field(default_factory=dict)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    fuser: ComponentSpec | None = None
    user: ComponentSpec | None = None
    model: ComponentSpec | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    retriever: ComponentSpec | None = None
    ranker: ComponentSpec | None = None
    evaluate: EvaluateConfig | None = None
    version: int = SCHEMA_VERSION
    file: Path | None = field(default=None, compare=False)
    lines: dict[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)
    """The line of each key path in the file it was read from (for messages)."""

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path`` in the file, or of its closest parent that has one."""
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return None

    def components(self) -> list[tuple[str, ComponentSpec]]:
        """Every component block with its section path (``encoders.image``, ``fuser``, …), in pipeline order."""
        out: list[tuple[str, ComponentSpec]] = []
        if self.data is not None:
            out.append(("data", self.data))
        out.extend((f"encoders.{name}", spec) for name, spec in self.encoders.items())
        for section in ("fuser", "user", "model", "retriever", "ranker"):
            spec = getattr(self, section)
            if spec is not None:
                out.append((section, spec))
        return out


def load_pipeline(path: str | Path, registry: Registry | None = None) -> PipelineSpec:
    """Read and validate a pipeline file.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or has invalid content; every problem is listed.
    """
    path = Path(path)
    return parse_pipeline(_read_text(path), file=path, registry=registry)


def parse_pipeline(
    text: str,
    *,
    file: str | Path | None = None,
    base_dir: Path | None = None,
    registry: Registry | None = None,
) -> PipelineSpec:
    """Validate pipeline YAML given as text (``file`` only names it in messages and sets ``base_dir``)."""
    registry = registry if registry is not None else get_registry()
    if base_dir is None and file is not None:
        base_dir = Path(file).resolve().parent
    data, lines = _parse_yaml(text, file)
    builder = SpecBuilder(registry, _line_lookup(lines), base_dir)
    spec = _build(data, builder, file)
    builder.raise_problems(file)
    assert spec is not None
    return replace(spec, lines=dict(lines))


def read_pipeline_yaml(path: str | Path) -> tuple[Any, dict[KeyPath, int]]:
    """A pipeline file's plain YAML data (not validated) and the line of every key path, for tools that rewrite
    the file before :func:`parse_pipeline` sees it (``fusionrec tune`` replaces search ranges by values).

    Raises:
        ConfigError: the file is missing, not UTF-8, not valid YAML, or has duplicate keys.
    """
    path = Path(path)
    return _parse_yaml(_read_text(path), path)


def _read_text(path: Path) -> str:
    """A pipeline file's text, or a ConfigError saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError.at((), f"cannot read the pipeline file: {exc.strerror or exc}.", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError.at((), f"not a UTF-8 text file ({exc.reason}).", file=path) from exc


def dump_pipeline(spec: PipelineSpec) -> dict[str, Any]:
    """Plain data (every default filled in) that :func:`parse_pipeline` turns back into an equal spec."""
    out: dict[str, Any] = {"fusionrec": spec.version}
    if spec.data is not None:
        out["data"] = spec.data.to_dict()
    if spec.encoders:
        out["encoders"] = {name: enc.to_dict() for name, enc in spec.encoders.items()}
    if spec.encoders or spec.features != FeaturesConfig():  # a set features section round-trips without encoders
        out["features"] = spec.features.model_dump(mode="json")
    for section in ("fuser", "user", "model"):
        value = getattr(spec, section)
        if value is not None:
            out[section] = value.to_dict()
    out["train"] = spec.train.model_dump(mode="json")
    for section in ("retriever", "ranker"):
        value = getattr(spec, section)
        if value is not None:
            out[section] = value.to_dict()
    if spec.evaluate is not None:
        out["evaluate"] = spec.evaluate.model_dump(mode="json")
    return out


def dumps_pipeline(spec: PipelineSpec) -> str:
    """:func:`dump_pipeline` as YAML text."""
    return yaml.safe_dump(dump_pipeline(spec), sort_keys=False, allow_unicode=True)


def parse_metric(name: str) -> tuple[str, int] | None:
    """``"recall@20"`` → ``("recall", 20)``; ``None`` when it is not of the form ``name@K``."""
    match = METRIC_RE.match(name)
    return (match["name"], int(match["k"])) if match else None


def _build(data: Any, b: SpecBuilder, file: str | Path | None) -> PipelineSpec | None:
    if data is None:
        b.problem((), "the file is empty; a pipeline starts with `fusionrec: 1`.")
        return None
    if not isinstance(data, Mapping):
        b.problem((), f"a pipeline file is a mapping of sections ({', '.join(SECTIONS)}), not a {type(data).__name__}.")
        return None
    for key in data:
        if key not in SECTIONS:
            b.problem(
                (str(key),),
                f"unknown section {key!r}.{did_you_mean(str(key), SECTIONS)} Sections: {', '.join(SECTIONS)}.",
            )
    version = data.get("fusionrec")
    if "fusionrec" not in data:
        b.problem((), f"missing the schema version: add `fusionrec: {SCHEMA_VERSION}` as the first line.")
    elif type(version) is not int or version != SCHEMA_VERSION:
        b.problem(
            ("fusionrec",),
            f"unsupported schema version {version!r}: this fusionrec reads version {SCHEMA_VERSION}. "
            + ("Upgrade fusionrec to read newer files." if isinstance(version, int) and version > 1 else ""),
        )

    parts: dict[str, Any] = {}
    for section, kind in COMPONENT_SECTIONS.items():
        if data.get(section) is not None:
            parts[section] = b.component(kind, data[section], (section,))
    encoders: dict[str, ComponentSpec] = {}
    raw_encoders = data.get("encoders")
    if raw_encoders is not None:
        if not isinstance(raw_encoders, Mapping):
            b.problem(("encoders",), "expected a mapping of modality name → encoder, e.g. `image: {type: ...}`.")
        else:
            for modality, raw in raw_encoders.items():
                if not isinstance(modality, str) or not MODALITY_RE.match(modality):
                    b.problem(
                        ("encoders", str(modality)),
                        f"modality names are lower-case identifiers ([a-z][a-z0-9_]*), got {modality!r}.",
                    )
                    continue
                enc = b.component("encoder", raw, ("encoders", modality))
                if enc is not None:
                    encoders[modality] = enc
    settings: dict[str, Any] = {}
    for section, model in SETTINGS_SECTIONS.items():
        if data.get(section) is not None:
            settings[section] = b.model(model, data[section], (section,), f"section '{section}'")
    if settings.get("evaluate") is not None:
        _check_metrics(settings["evaluate"], b)
    if b.problems:
        return None
    return PipelineSpec(
        data=parts.get("data"),
        encoders=encoders,
        fuser=parts.get("fuser"),
        user=parts.get("user"),
        model=parts.get("model"),
        features=settings.get("features") or FeaturesConfig(),
        train=settings.get("train") or TrainConfig(),
        retriever=parts.get("retriever"),
        ranker=parts.get("ranker"),
        evaluate=settings.get("evaluate"),
        file=Path(file) if file is not None else None,
    )


def _check_metrics(evaluate: EvaluateConfig, b: SpecBuilder) -> None:
    table = b.registry.table("metric")
    for i, name in enumerate(evaluate.metrics):
        parsed = parse_metric(name)
        if parsed is None:
            b.problem(("evaluate", "metrics", i), f"metrics are written name@K (e.g. recall@20), got {name!r}.")
        elif parsed[0] not in table:
            b.problem(("evaluate", "metrics", i), table.unknown_message(parsed[0]), unknown_name=True)


def _parse_yaml(text: str, file: str | Path | None) -> tuple[Any, dict[KeyPath, int]]:
    """Load with the safe loader and record the line of every key and list item (and duplicate keys)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem((), f"invalid YAML: {what}.", line)], file=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError.at((), f"invalid YAML: {exc}.", file=file) from exc
    except RecursionError as exc:
        raise ConfigError.at((), "invalid YAML: nested too deeply for a pipeline file.", file=file) from exc
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        try:
            _walk(node, (), lines, duplicates, _Budget(), ())
        except RecursionError as exc:
            raise ConfigError.at((), "invalid YAML: nested too deeply for a pipeline file.", file=file) from exc
        except _UnwalkableError as exc:
            raise ConfigError([Problem(exc.path, exc.message, exc.line)], file=file) from None
    if duplicates:
        raise ConfigError(duplicates, file=file)
    return data, lines


MAX_NODES = 100_000
"""Values a pipeline file may hold once its aliases are expanded (a real one holds a few hundred): more is a file
built to blow up (nested aliases multiply), refused before anything validates it."""


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES


class _UnwalkableError(Exception):
    def __init__(self, path: KeyPath, message: str, line: int) -> None:
        self.path, self.message, self.line = path, message, line


def _walk(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    duplicates: list[Problem],
    budget: _Budget,
    ancestors: tuple[int, ...],
) -> None:
    budget.left -= 1
    line = node.start_mark.line + 1
    if id(node) in ancestors:  # `a: &x [*x]`: an alias inside the value it names
        raise _UnwalkableError(path, "a YAML alias refers to the value that contains it, which never ends.", line)
    if budget.left < 0:
        raise _UnwalkableError(  # named at its top-level key: the path down to the 100,001st value says nothing
            path[:1], f"more than {MAX_NODES:,} values once YAML aliases are expanded; a pipeline is far smaller.", line
        )
    ancestors = (*ancestors, id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                duplicates.append(
                    Problem(
                        (*path, key), f"duplicate key (first at line {seen[key]}); YAML would keep only the last.", line
                    )
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, duplicates, budget, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            lines[(*path, i)] = child.start_mark.line + 1
            _walk(child, (*path, i), lines, duplicates, budget, ancestors)


def _line_lookup(lines: dict[KeyPath, int]) -> Any:
    def line_of(path: KeyPath) -> int | None:
        for cut in range(len(path), 0, -1):
            if path[:cut] in lines:
                return lines[path[:cut]]
        return None

    return line_of


__all__ = [
    "COMPONENT_SECTIONS",
    "SCHEMA_VERSION",
    "EvaluateConfig",
    "FeaturesConfig",
    "PipelineSpec",
    "TrainConfig",
    "dump_pipeline",
    "dumps_pipeline",
    "load_pipeline",
    "parse_metric",
    "parse_pipeline",
    "read_pipeline_yaml",
]
