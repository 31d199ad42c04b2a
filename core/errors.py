"""The error hierarchy users see.

Every error a user can cause derives from :class:`FusionrecError`. The CLI prints ``str(error)`` and exits 2;
anything else is a bug and gets a traceback only with ``--debug``.

None of these subclass :class:`KeyError`: its ``str()`` wraps the message in quotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KeyPath = tuple[str | int, ...]
"""Where a value sits in a pipeline file: ``("encoders", "image", "model")`` or ``("evaluate", "metrics", 2)``."""


def format_path(path: KeyPath) -> str:
    """Render a key path the way users write it: ``encoders.image.model``, ``evaluate.metrics[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


class FusionrecError(Exception):
    """Base class of every error a user of fusionrec can cause."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a pipeline file.

    Attributes:
        path: key path of the offending value (empty for the whole file).
        message: what is wrong and how to fix it, as one sentence or two.
        line: 1-based line in the file, when known.
        unknown_name: true when the problem is an unknown component name (see :class:`UnknownComponentError`).
    """

    path: KeyPath
    message: str
    line: int | None = None
    unknown_name: bool = False

    def render(self, file: str | None) -> str:
        where = file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {format_path(self.path)}: {self.message}"


class ConfigError(FusionrecError):
    """A pipeline file (or a component's parameters) is invalid.

    Carries every problem found, so a user fixes them all in one go. ``file``, ``path`` and ``line`` describe the
    first problem, for callers that want one location.
    """

    def __init__(self, problems: Sequence[Problem], file: str | Path | None = None) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.file: str | None = str(file) if file is not None else None
        first = self.problems[0]
        self.path: KeyPath = first.path
        self.line: int | None = first.line
        super().__init__(self._render())

    @classmethod
    def at(cls, path: KeyPath, message: str, *, file: str | Path | None = None, line: int | None = None) -> ConfigError:
        """Build an error with a single problem."""
        return cls([Problem(path, message, line)], file=file)

    def _render(self) -> str:
        lines = [p.render(self.file) for p in self.problems]
        if len(lines) == 1:
            return lines[0]
        head = f"{self.file or '<pipeline>'}: {len(lines)} problems:"
        return "\n".join([head, *("  " + line for line in lines)])


class UnknownComponentError(ConfigError):
    """A ``type:`` (or a metric name) names no registered component."""


class PluginError(FusionrecError):
    """A plugin could not be loaded or registered something invalid (a duplicate or malformed name)."""


class DataError(FusionrecError):
    """Input data is missing or malformed.

    Attributes:
        file: the data file, when the problem is in one.
        row: 1-based row (line for text formats), when the problem is in one row.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, row: int | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        where = ""
        if self.file is not None:
            where = self.file + (f", row {row}" if row is not None else "") + ": "
        super().__init__(where + message)


def did_you_mean(given: str, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` (empty string when nothing is close)."""
    import difflib

    close = difflib.get_close_matches(given, list(choices), n=1, cutoff=0.6)
    if not close and "." in given:
        # a misspelt prefix should not hide a right short name: 'gmu.gated_unt' → 'gmu.gated_unit'
        close = difflib.get_close_matches(given.rsplit(".", 1)[-1], list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def list_names(names: Sequence[str], limit: int = 30) -> str:
    """A sorted, comma-separated list of names, shortened past ``limit``."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:limit])
    return shown + (f", … ({len(ordered) - limit} more)" if len(ordered) > limit else "")
