"""Validation of ``{type: name, **params}`` blocks into :class:`~fusionrec.core.params.ComponentSpec`.

The builder collects every problem it finds (unknown names, unknown or invalid parameters, in nested components
too) instead of stopping at the first, so a user sees them all in one message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from fusionrec.core.errors import ConfigError, KeyPath, Problem, UnknownComponentError, did_you_mean, list_names
from fusionrec.core.params import RESOLVER_KEY, ComponentSpec, NoParams

if TYPE_CHECKING:
    from fusionrec.registry.tables import Registry

LineOf = Callable[[KeyPath], "int | None"]
ModelT = TypeVar("ModelT", bound=BaseModel)


class SpecBuilder:
    """Turns mappings into specs against a registry, collecting problems.

    Args:
        registry: where component names are looked up.
        line_of: maps a key path to its line in the source file (for messages); optional.
        base_dir: folder that relative path parameters resolve against.
    """

    def __init__(self, registry: Registry, line_of: LineOf | None = None, base_dir: Path | None = None) -> None:
        self.registry = registry
        self.line_of = line_of or (lambda path: None)
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self._stack: list[KeyPath] = []

    def problem(self, path: KeyPath, message: str, *, unknown_name: bool = False) -> None:
        """Record one problem at ``path``."""
        self.problems.append(Problem(path, message, self.line_of(path), unknown_name))

    def raise_problems(self, file: str | Path | None = None) -> None:
        """Raise everything collected so far as one error (:class:`UnknownComponentError` if only names)."""
        if not self.problems:
            return
        cls = UnknownComponentError if all(p.unknown_name for p in self.problems) else ConfigError
        ordered = sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))  # stable: file order
        raise cls(ordered, file=file)

    def component(self, kind: str, value: object, path: KeyPath) -> ComponentSpec | None:
        """Validate one block; returns ``None`` (and records why) when it is invalid."""
        table = self.registry.table(kind)
        if isinstance(value, str):
            value = {"type": value}  # `fuser: attention` is short for `fuser: {type: attention}`
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a {{type: ...}} mapping naming a {kind}, got {_describe(value)}.")
            return None
        if "type" not in value:
            self.problem(
                path,
                f"missing 'type': say which {kind} to use, e.g. `type: {next(iter(table), 'NAME')}`. "
                f"Available: {list_names(list(table)) or 'none registered'}.",
            )
            return None
        name = value["type"]
        if not isinstance(name, str) or name not in table:
            self.problem((*path, "type"), table.unknown_message(name), unknown_name=True)
            return None
        raw = {key: val for key, val in value.items() if key != "type"}
        params = self.model(table[name].params, raw, path, f"{kind} '{name}'")
        return ComponentSpec(kind, name, params, path) if params is not None else None

    def model(self, model: type[ModelT], raw: object, path: KeyPath, what: str) -> ModelT | None:
        """Validate ``raw`` against a parameter model; returns ``None`` (and records why) when it is invalid.

        Args:
            model: the pydantic model.
            raw: the mapping to validate.
            path: where it sits, for messages.
            what: how messages name the owner (``"fuser 'attention'"``, ``"section 'train'"``).
        """
        if not isinstance(raw, Mapping):
            self.problem(path, f"expected a mapping of {what} settings, got {_describe(raw)}.")
            return None
        self._stack.append(path)
        try:
            return model.model_validate(raw, context={RESOLVER_KEY: self, "base_dir": self.base_dir})
        except ValidationError as exc:
            for error in exc.errors():
                self._pydantic_problem(path, what, model, error)
            return None
        finally:
            self._stack.pop()

    def resolve_nested(self, kind: str, value: object, field: str) -> ComponentSpec:
        """Called by :func:`fusionrec.core.params.Component` fields during validation."""
        path = (*self._stack[-1], field) if self._stack else (field,)
        spec = self.component(kind, value, path)
        # A placeholder keeps the outer validation going; the nested problems are already recorded.
        return spec if spec is not None else ComponentSpec(kind, "<invalid>", NoParams(), path)

    def _pydantic_problem(self, path: KeyPath, what: str, params: type[BaseModel], error: Mapping[str, Any]) -> None:
        loc: KeyPath = tuple(error.get("loc", ()))
        where = (*path, *loc)
        key = str(loc[-1]) if loc else ""
        fields = list(params.model_fields)
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            self.problem(
                where,
                f"unknown parameter '{key}' for {what}.{did_you_mean(key, fields)} "
                f"Parameters: {', '.join(fields) or 'none'}.",
            )
        elif error["type"] == "missing" and len(loc) == 1:
            described = params.model_fields[key].description if key in params.model_fields else None
            self.problem(
                where,
                f"missing required parameter '{key}' of {what}" + (f" ({described})." if described else "."),
            )
        else:
            message = str(error["msg"])
            if error["type"].startswith("value_error"):
                message = message.removeprefix("Value error, ")
            self.problem(where, f"{message}; got {_describe(error.get('input'))}.")


def _describe(value: object) -> str:
    if isinstance(value, Mapping) and "tune" in value:
        return "a search range, which `fusionrec tune FILE` searches (docs/tuning.md); a pipeline to run needs a value"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
