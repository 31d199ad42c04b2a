"""Parameter models and component specs: what a ``{type: name, **params}`` block becomes once validated.

Every component declares its parameters as a subclass of :class:`Params` (pydantic, ``extra="forbid"``): an
unknown key is an error, never silently ignored. A parameter that is itself a component (a dataset's ``split``,
say) is declared with :func:`Component`; the pipeline builder validates the nested block against that kind's
registered components and the factory receives the built object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from fusionrec.core.errors import KeyPath

RESOLVER_KEY = "fusionrec_resolver"
"""Key of the pydantic validation context under which the pipeline builder passes its :class:`SpecResolver`."""


class Params(BaseModel):
    """Base class of every component's parameter model.

    Unknown keys are rejected, instances are immutable (specs are values: they compare and hash by content), and
    every field should carry a ``description`` (it becomes the component reference and ``fusionrec plugins info``).
    """

    # validate_default: defaults go through the same validators as given values (a nested component's default
    # block becomes a spec, a default path resolves against the pipeline file)
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, validate_default=True)


class NoParams(Params):
    """Parameters of a component that takes none."""


class ComponentSpec:
    """A validated ``{type: name, **params}`` block.

    Attributes:
        kind: the component kind (``"fuser"``, ``"encoder"``, …).
        type: the registered name.
        params: the validated parameters; nested components inside are specs too.
        path: where the block sits in the pipeline file (not part of equality).
    """

    __slots__ = ("kind", "params", "path", "type")

    def __init__(self, kind: str, type: str, params: Params, path: KeyPath = ()) -> None:
        self.kind = kind
        self.type = type
        self.params = params
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-ready) that validates back to an equal spec: ``{"type": ..., **params}``."""
        return {"type": self.type, **self.params.model_dump(mode="json")}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComponentSpec):
            return NotImplemented
        return (self.kind, self.type, self.params) == (other.kind, other.type, other.params)

    def __hash__(self) -> int:
        return hash((self.kind, self.type, self.params))

    def __repr__(self) -> str:
        return f"ComponentSpec(kind={self.kind!r}, type={self.type!r}, params={self.params!r})"


class BuildRecord:
    """How a component was built: its spec and the context arguments. The registry attaches one to each
    component it builds, as ``component.fusionrec_build``, so the component can be saved and rebuilt."""

    __slots__ = ("context", "spec")

    def __init__(self, spec: ComponentSpec, context: dict[str, Any]) -> None:
        self.spec = spec
        self.context = context


class SpecResolver(Protocol):
    """What the pipeline builder hands to nested-component fields through the validation context."""

    def resolve_nested(self, kind: str, value: object, field: str) -> ComponentSpec:
        """Validate ``value`` (a ``{type: …}`` mapping) as a component of ``kind`` sitting in field ``field``."""
        ...


def Component(kind: str) -> Any:  # noqa: N802 - reads as a type in annotations
    """Annotation for a parameter that is itself a component of ``kind``.

    Example::

        class MovieLensParams(Params):
            split: Component("split") = {"type": "temporal"}

    The field holds a :class:`ComponentSpec` after validation; the factory receives the built component.
    Nested fields are supported directly on a model (not inside lists or dicts).
    """

    def validate(value: object, info: ValidationInfo) -> ComponentSpec:
        if isinstance(value, ComponentSpec):
            return value
        resolver = (info.context or {}).get(RESOLVER_KEY)
        if resolver is None:
            raise ValueError(
                f"a nested {kind} must be given as a {{type: ...}} block in a pipeline, or as a built ComponentSpec"
            )
        return resolver.resolve_nested(kind, value, info.field_name or "?")  # type: ignore[no-any-return]

    schema = {"type": "object", "required": ["type"], "x-fusionrec-kind": kind}
    return Annotated[
        ComponentSpec,
        BeforeValidator(validate),
        PlainSerializer(lambda spec: spec.to_dict(), return_type=dict),
        WithJsonSchema(schema),
    ]


def _resolve_path(value: object, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError(f"expected a file or folder path, got {type(value).__name__}")
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # `~someone/…` for a user this machine does not have
        raise ValueError(f"cannot expand {str(value).split('/', 1)[0]!r} to a home folder ({exc})") from None
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


ConfigPath = Annotated[
    Path,
    BeforeValidator(_resolve_path),
    PlainSerializer(lambda p: str(p), return_type=str),
    WithJsonSchema({"type": "string", "format": "path"}),
]
"""A path parameter. Relative paths resolve against the folder of the pipeline file that gives them."""


def _exists(kind: str) -> Callable[[Path], Path]:
    """A validator that a resolved path is an existing ``file`` or ``folder``."""

    def check(path: Path) -> Path:
        try:
            if path.is_dir() if kind == "folder" else path.is_file():
                return path
            exists, parent = path.exists(), path.parent.is_dir()
        except OSError as exc:  # a name too long for the file system, a folder we may not enter …
            raise ValueError(f"{str(path)[:200]}: cannot be checked: {exc.strerror or exc}") from None
        if exists:
            raise ValueError(f"{path} is not a {kind}; expected an existing {kind}")
        hint = "" if parent else f" (nor does its folder {path.parent})"
        raise ValueError(
            f"{path} does not exist{hint}; expected an existing {kind}. Relative paths resolve against the "
            "pipeline file's folder: fix the path, or create it first"
        )

    return check


def _existing(kind: str) -> Any:
    return Annotated[
        Path,
        BeforeValidator(_resolve_path),
        AfterValidator(_exists(kind)),
        PlainSerializer(lambda p: str(p), return_type=str),
        WithJsonSchema({"type": "string", "format": "path", "x-fusionrec-exists": kind}),
    ]


ExistingFile: Any = _existing("file")
"""A :data:`ConfigPath` that must name an existing file when the pipeline is validated (``fusionrec validate``
reports a missing one at its line, with its key path)."""

ExistingFolder: Any = _existing("folder")
"""A :data:`ConfigPath` that must name an existing folder when the pipeline is validated."""


def field_names(params: type[Params]) -> list[str]:
    """Names of a parameter model's fields, in declaration order."""
    return list(params.model_fields)


def as_kwargs(params: Params, built: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The keyword arguments a factory is called with: each field's value, nested specs replaced by ``built``."""
    kwargs = {name: getattr(params, name) for name in type(params).model_fields}
    if built:
        kwargs.update(built)
    return kwargs
