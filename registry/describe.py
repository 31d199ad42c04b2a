"""Human-readable descriptions of parameter models, for ``fusionrec plugins info`` and the component reference."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

_CONSTRAINTS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "min length", "max_length": "max length"}


@dataclass(frozen=True)
class ParamDoc:
    """One parameter: name, type, default (``None`` when required), description and constraints."""

    name: str
    type: str
    default: str | None
    description: str
    constraints: str

    @property
    def required(self) -> bool:
        return self.default is None


def describe_params(model: type[BaseModel]) -> list[ParamDoc]:
    """Describe every field of a parameter model, in declaration order."""
    docs = []
    for name, info in model.model_fields.items():
        if info.is_required():
            default = None
        elif info.default_factory is not None:
            default = repr(info.default_factory())  # type: ignore[call-arg]
        else:
            default = _show(info.default)
        constraints = []
        for meta in info.metadata:
            for attr, symbol in _CONSTRAINTS.items():
                value = getattr(meta, attr, None)
                if value is not None:
                    constraints.append(f"{symbol} {value}")
        kind = _special_type(info.metadata)  # pydantic moves Annotated[...] metadata onto the field
        docs.append(
            ParamDoc(name, kind or type_name(info.annotation), default, info.description or "", ", ".join(constraints))
        )
    return docs


def _special_type(metadata: list[Any]) -> str | None:
    """``<kind> component`` for a nested-component field, ``path`` for a path: what their JSON schema marks."""
    for meta in metadata:
        schema = getattr(meta, "json_schema", None)
        if isinstance(schema, dict) and "x-fusionrec-kind" in schema:
            return f"{schema['x-fusionrec-kind']} component"
        if isinstance(schema, dict) and schema.get("format") == "path":
            return "path"
    return None


def type_name(annotation: Any) -> str:
    """A short readable name for a type annotation: ``int | None``, ``tuple[int, ...]``, ``'a' | 'b'``."""
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _special_type(extra) or type_name(base)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(arg) for arg in typing.get_args(annotation))
    if origin in (list, tuple, dict, set, frozenset) and typing.get_args(annotation):
        args = ["..." if arg is Ellipsis else type_name(arg) for arg in typing.get_args(annotation)]
        return f"{origin.__name__}[{', '.join(args)}]"
    if origin is None and isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    text = re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)
    return re.sub(r"\b(?:NoneType|None)\b", "null", text)


def _show(value: Any) -> str:
    if value is PydanticUndefined:
        return ""
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return repr(value.model_dump(mode="json"))
    if isinstance(value, tuple):
        return repr(list(value))
    return repr(value)
