"""Search ranges in a pipeline file: ``lr: {tune: log_uniform, low: 1e-4, high: 1e-2}`` in place of a value.

:func:`read_space` finds every range in a pipeline file, checks its own shape (a bad range is a
:class:`~fusionrec.core.errors.ConfigError` with the file, line and key path), and checks that the values it can
give pass the component's own parameter model (each end of a numeric range, every choice), so a study never starts
with a range its pipeline would reject. :func:`with_values` puts concrete values in their place;
:func:`default_space` fills a small range for the built-in towers and fusers when the file declares none.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionrec.core.assembly.config import parse_pipeline, read_pipeline_yaml
from fusionrec.core.errors import ConfigError, KeyPath, Problem, format_path
from fusionrec.registry import Registry

KINDS = ("log_uniform", "uniform", "int", "choice")
"""The kinds of range (the ``tune`` key)."""

_KEYS = {
    "log_uniform": ({"low", "high"}, set()),
    "uniform": ({"low", "high"}, set()),
    "int": ({"low", "high"}, {"step", "log"}),
    "choice": ({"values"}, set()),
}


@dataclass(frozen=True)
class Range:
    """One search range.

    Attributes:
        path: where the range stands in the pipeline (``("train", "lr")``).
        kind: ``log_uniform``, ``uniform``, ``int`` or ``choice``.
        low, high: the bounds (numeric kinds; both included).
        step: the ``int`` kind's step.
        values: the ``choice`` kind's values.
        line: its line in the file.
    """

    path: KeyPath
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    log: bool = False
    values: tuple[Any, ...] = ()
    line: int | None = None

    @property
    def name(self) -> str:
        """The parameter's name in the study and the tables: its key path (``train.lr``)."""
        return format_path(self.path)

    def ends(self) -> list[Any]:
        """The values checked before a study starts: both ends of a numeric range, every choice."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return [int(self.low), int(self.low + (self.high - self.low) // self.step * self.step)]
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tune": self.kind}
        if self.kind == "choice":
            out["values"] = list(self.values)
        else:
            out |= {"low": self.low, "high": self.high}
        if self.kind == "int":
            out |= {"step": self.step, "log": self.log}
        return out


def is_range(value: Any) -> bool:
    return isinstance(value, Mapping) and "tune" in value


def find_ranges(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Mapping[str, Any]]]:
    """Every ``{tune: …}`` mapping in plain YAML data, with its key path, in file order."""
    if is_range(data):
        yield path, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from find_ranges(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from find_ranges(value, (*path, i))


def parse_range(path: KeyPath, raw: Mapping[str, Any], line: int | None) -> Range | list[Problem]:
    """One range from its mapping, or every problem with it."""
    kind = raw.get("tune")
    if kind not in KINDS:
        return [Problem(path, f"tune: {kind!r} is not a kind of search range; use one of {', '.join(KINDS)}.", line)]
    required, optional = _KEYS[kind]
    problems = [Problem(path, f"a {kind} range needs `{key}`.", line) for key in sorted(required - set(raw))]
    problems += [
        Problem(
            path, f"unknown key {key!r} in a {kind} range; it takes {', '.join(sorted(required | optional))}.", line
        )
        for key in sorted(set(raw) - required - optional - {"tune"})
    ]
    if problems:
        return problems
    if kind == "choice":
        values = raw["values"]
        if not isinstance(values, list) or not values:
            return [Problem(path, f"`values` must be a non-empty list of choices, got {values!r}.", line)]
        return Range(path, kind, values=tuple(values), line=line)
    low, high = raw["low"], raw["high"]
    numbers = (int,) if kind == "int" else (int, float)
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers) or not math.isfinite(value):
            what = "a whole number" if kind == "int" else "a number"
            problems.append(Problem(path, f"`{key}` must be {what}, got {value!r}.", line))
    if problems:
        return problems
    if low >= high:
        return [Problem(path, f"`low` ({low}) must be below `high` ({high}).", line)]
    if kind == "log_uniform" and low <= 0:
        return [Problem(path, f"a log_uniform range needs low > 0, got {low}; use `tune: uniform` for 0.", line)]
    step = raw.get("step", 1)
    if kind == "int" and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        return [Problem(path, f"`step` must be a whole number ≥ 1, got {step!r}.", line)]
    log = bool(raw.get("log", False))
    if kind == "int" and log and (low < 1 or step != 1):
        return [Problem(path, "an int range with `log: true` needs low ≥ 1 and step 1.", line)]
    return Range(path, kind, float(low), float(high), int(step), log, line=line)


@dataclass(frozen=True)
class Space:
    """A pipeline file with search ranges: its plain data, its ranges, where it came from."""

    data: Any
    ranges: tuple[Range, ...]
    file: Path
    lines: dict[KeyPath, int]

    @property
    def base_dir(self) -> Path:
        return self.file.resolve().parent

    def fingerprint(self) -> str:
        """The ranges as text: a study continues only over the same ranges."""
        return json.dumps([[r.name, r.to_dict()] for r in self.ranges], sort_keys=True)


def read_space(file: str | Path, registry: Registry, *, default: bool = False) -> Space:
    """Read a pipeline file's search ranges and check them (with ``default``: fill :func:`default_space` when the file
    declares none).

    Raises:
        ConfigError: a malformed range, a value a range can give that the component rejects, or no range at all.
    """
    file = Path(file)
    data, lines = read_pipeline_yaml(file)
    ranges: list[Range] = []
    problems: list[Problem] = []
    for path, raw in find_ranges(data):
        parsed = parse_range(path, raw, _line(lines, path))
        if isinstance(parsed, list):
            problems.extend(parsed)
        else:
            ranges.append(parsed)
    if problems:
        raise ConfigError(problems, file=file)
    if not ranges and default:
        ranges = default_space(data, file, registry)
    if not ranges:
        raise ConfigError.at(
            (),
            "the pipeline declares no search range. Put one in place of a value, e.g. "
            "`lr: {tune: log_uniform, low: 1.0e-4, high: 1.0e-2}` (docs/tuning.md), or pass --default-space.",
            file=file,
        )
    space = Space(data, tuple(ranges), file, lines)
    check_values(space, registry)
    return space


def with_values(data: Any, values: Mapping[KeyPath, Any]) -> Any:
    """A deep copy of ``data`` with the value at each key path replaced."""
    out = copy.deepcopy(data)
    for path, value in values.items():
        node = out
        for key in path[:-1]:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}  # a default range in a section the file leaves out (`train`)
            node = node[key]
        node[path[-1]] = value
    return out


def first_values(space: Space) -> dict[KeyPath, Any]:
    """One value per range (its first end), a concrete pipeline to check against."""
    return {r.path: r.ends()[0] for r in space.ranges}


def check_values(space: Space, registry: Registry) -> None:
    """Parse the pipeline with each range's ends (the others at their first end): every value a range can give
    must pass its component's parameter model.

    Raises:
        ConfigError: the pipeline's own problems (those with every range at its first end, elsewhere than a range),
            each once as itself; then each end that fails, with the range's line and what the component said.
    """
    base = first_values(space)
    own = [p for p in _parse_problems(space, base, registry) if not _under_a_range(space, p.path)]
    if own:
        raise ConfigError(own, file=space.file)
    problems: list[Problem] = []
    seen: set[str] = set()
    for r in space.ranges:
        for end in r.ends():
            for p in _parse_problems(space, {**base, r.path: end}, registry):
                message = f"the range can give {end!r}, which fails: {format_path(p.path)}: {p.message}"
                if message not in seen:
                    seen.add(message)
                    problems.append(Problem(r.path, message, r.line))
    if problems:
        raise ConfigError(problems, file=space.file)


def _parse_problems(space: Space, values: Mapping[KeyPath, Any], registry: Registry) -> list[Problem]:
    try:
        parse_pipeline(_text(with_values(space.data, values)), base_dir=space.base_dir, registry=registry)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _under_a_range(space: Space, path: KeyPath) -> bool:
    """Whether a problem at ``path`` may come from a range's value (at the range, inside it, or at its section)."""
    return any(path[: len(r.path)] == r.path or r.path[: len(path)] == path for r in space.ranges)


def default_space(data: Any, file: Path, registry: Registry) -> list[Range]:
    """A small search space for a two-tower pipeline: lr, loss, the item vectors' size, dropout and history
    length where its fuser and user tower have those parameters (docs/tuning.md lists it)."""
    if not isinstance(data, Mapping) or data.get("model") is not None:
        raise ConfigError.at(
            ("model",),
            "--default-space covers the two-tower model (fuser, user tower, train); declare the ranges of a "
            "`model` section yourself, e.g. `dim: {tune: choice, values: [32, 64]}`.",
            file=file,
        )
    ranges = [
        Range(("train", "lr"), "log_uniform", 1e-4, 1e-2),
        Range(("train", "loss"), "choice", values=("sampled_softmax", "softmax", "bpr")),
    ]
    fields = {"fuser": _fields(data, "fuser", "fuser", registry), "user": _fields(data, "user", "user_tower", registry)}
    if data.get("fuser") is None:
        ranges.append(Range(("train", "dim"), "choice", values=(32, 64, 128)))
    elif "dim" in fields["fuser"]:
        ranges.append(Range(("fuser", "dim"), "choice", values=(32, 64, 128)))
    for section in ("fuser", "user"):
        if "dropout" in fields[section]:
            ranges.append(Range((section, "dropout"), "uniform", 0.0, 0.5))
    if "max_history" in fields["user"]:
        ranges.append(Range(("user", "max_history"), "choice", values=(10, 20, 50, 100)))
    return ranges


def _fields(data: Mapping[str, Any], section: str, kind: str, registry: Registry) -> set[str]:
    block = data.get(section)
    if not isinstance(block, Mapping) or block.get("type") not in registry.table(kind):
        return set()
    return set(registry.table(kind)[str(block["type"])].params.model_fields)


def _line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    for cut in range(len(path), 0, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None


def _text(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
