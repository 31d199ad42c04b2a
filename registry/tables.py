"""Component kinds and the typed name → factory tables the plugins fill."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fusionrec.core.errors import ConfigError, FusionrecError, PluginError, Problem, did_you_mean, list_names
from fusionrec.core.params import BuildRecord, ComponentSpec, Params, as_kwargs

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Kind:
    """One kind of component.

    Attributes:
        name: singular name used in messages and tables (``"fuser"``).
        hook: the hookspec that registers it (``"register_fusers"``).
        interface: dotted path of the interface class its components implement.
        context: keyword arguments the pipeline passes to every factory besides the parameters.
    """

    name: str
    hook: str
    interface: str
    context: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind("encoder", "register_encoders", "fusionrec.core.encoder.Encoder"),
    Kind("fuser", "register_fusers", "fusionrec.core.fusion.Fuser", ("input_dims",)),
    Kind("user_tower", "register_user_towers", "fusionrec.core.user_tower.UserTower", ("item_dim", "n_users")),
    Kind("retriever", "register_retrievers", "fusionrec.core.retrieval.Retriever"),
    Kind("ranker", "register_rankers", "fusionrec.core.ranking.Ranker"),
    Kind("dataset", "register_datasets", "fusionrec.core.data.Dataset"),
    Kind("split", "register_splits", "fusionrec.core.data.Split"),
    Kind("metric", "register_metrics", "fusionrec.core.metric.Metric", ("k",)),
    Kind("model", "register_models", "fusionrec.core.model.Model"),
)
KINDS_BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}


@dataclass
class ComponentInfo:
    """A registered component and where it came from.

    Attributes:
        kind: the component kind's name.
        name: the registered name (what ``type:`` says).
        factory: a callable, or a lazy ``"module:attribute"`` string.
        params: the parameter model.
        plugin: name of the plugin that registered it.
        distribution: the installed distribution that ships the plugin, when known.
        version: that distribution's version.
    """

    kind: str
    name: str
    factory: Callable[..., Any] | str
    params: type[Params]
    plugin: str
    distribution: str | None = None
    version: str | None = None
    _resolved: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def origin(self) -> str:
        """``plugin (distribution version)``, for messages."""
        if self.distribution:
            return f"'{self.plugin}' ({self.distribution} {self.version or '?'})"
        return f"'{self.plugin}'"

    @property
    def summary(self) -> str:
        """First line of the factory's (or else the parameter model's) docstring."""
        target: object = self.factory
        if isinstance(self.factory, str):
            try:
                target = self.resolve_factory()
            except PluginError as exc:
                return f"(unusable: {exc.__cause__ or exc})"
        doc = inspect.getdoc(target) or ""
        if not doc and target is not self.params:
            doc = inspect.getdoc(self.params) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def resolve_factory(self) -> Callable[..., Any]:
        """The factory callable, importing a lazy ``"module:attribute"`` on first use."""
        if self._resolved is not None:
            return self._resolved
        if not isinstance(self.factory, str):
            self._resolved = self.factory
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{self.kind} '{self.name}' from plugin {self.origin}: cannot import its factory "
                f"'{self.factory}': {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise PluginError(f"{self.kind} '{self.name}': factory '{self.factory}' is not callable")
        self._resolved = obj
        return obj  # type: ignore[no-any-return]


class ComponentTable(Mapping[str, ComponentInfo]):
    """The registered components of one kind, by name."""

    def __init__(self, kind: Kind, entries: Mapping[str, ComponentInfo] | None = None, note: str = "") -> None:
        self.kind = kind
        self._entries: dict[str, ComponentInfo] = dict(sorted((entries or {}).items()))
        self.note = note  # appended to unknown-name messages: which plugins are installed but not loaded

    def __getitem__(self, name: str) -> ComponentInfo:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def unknown_message(self, name: object) -> str:
        """The message for a name that is not in this table: closest match and what is available."""
        note = f" {self.note}" if self.note else ""
        if not self._entries:
            return (
                f"unknown {self.kind.name} {name!r}: no {self.kind.name} is registered. Install a plugin that "
                f"provides one; `fusionrec plugins` lists what is installed.{note}"
            )
        hint = did_you_mean(str(name), list(self._entries))
        return f"unknown {self.kind.name} {name!r}.{hint} Available: {list_names(list(self._entries))}.{note}"


class Registry:
    """Every component table, plus what is known about the plugins that filled them.

    Build one with :func:`fusionrec.registry.get_registry` (cached, all installed plugins) or
    :func:`fusionrec.registry.build_registry` (from a plugin manager of your own, e.g. in tests).
    """

    def __init__(self, tables: Mapping[str, ComponentTable], plugins: Mapping[str, Any]) -> None:
        self.tables: dict[str, ComponentTable] = dict(tables)
        self.plugins = dict(plugins)

    def table(self, kind: str) -> ComponentTable:
        """The table of one kind (``"fuser"``, ``"encoder"``, …)."""
        try:
            return self.tables[kind]
        except KeyError:
            raise FusionrecError(
                f"unknown component kind {kind!r}.{did_you_mean(kind, list(self.tables))} "
                f"Kinds: {list_names(list(self.tables))}."
            ) from None

    def find(self, name: str) -> list[ComponentInfo]:
        """Every component called ``name``, across kinds (``kind:name`` narrows it to one kind)."""
        kind, sep, bare = name.partition(":")
        if sep:
            info = self.table(kind).get(bare)
            return [info] if info else []
        return [table[name] for table in self.tables.values() if name in table]

    def spec(
        self, kind: str, value: object, *, path: tuple[str | int, ...] = (), file: str | None = None
    ) -> ComponentSpec:
        """Validate a ``{type: name, **params}`` mapping (or a bare name) into a spec; raises :class:`ConfigError`."""
        from fusionrec.registry.specs import SpecBuilder

        builder = SpecBuilder(self)
        spec = builder.component(kind, value, path)
        builder.raise_problems(file)
        assert spec is not None
        return spec

    def build(self, spec: ComponentSpec, **context: Any) -> Any:
        """Build the component a spec describes: nested component specs first, then the factory.

        Args:
            spec: a validated spec (from :meth:`spec` or a pipeline file).
            **context: the kind's context arguments (``input_dims`` for fusers, …).

        Raises:
            ConfigError: the factory rejected its arguments; the original exception is the ``__cause__``.
        """
        info = self.table(spec.kind).get(spec.type)
        if info is None:
            raise ConfigError.at((*spec.path, "type"), self.table(spec.kind).unknown_message(spec.type))
        nested = {
            name: self.build(value)
            for name, value in as_kwargs(spec.params).items()
            if isinstance(value, ComponentSpec)
        }
        factory = info.resolve_factory()
        try:
            component = factory(**context, **as_kwargs(spec.params, nested))
        except ConfigError as exc:
            # a factory reports problems relative to its own block ("weights"); anchor them where the block sits
            if not spec.path or all(p.path[: len(spec.path)] == spec.path for p in exc.problems):
                raise
            problems = [
                p if p.path[: len(spec.path)] == spec.path else Problem((*spec.path, *p.path), p.message, p.line)
                for p in exc.problems
            ]
            raise type(exc)(problems, file=exc.file) from exc
        except FusionrecError:
            raise
        except Exception as exc:
            raise ConfigError.at(
                spec.path, f"{spec.kind} '{spec.type}' could not be built: {type(exc).__name__}: {exc}"
            ) from exc
        with contextlib.suppress(AttributeError, TypeError):  # objects with __slots__ cannot carry it
            component.fusionrec_build = BuildRecord(spec, dict(context))
        return component

    def create(self, kind: str, type: str, /, context: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """Validate and build in one call: ``registry.create("fuser", "attention", {"input_dims": …}, dim=64)``."""
        return self.build(self.spec(kind, {"type": type, **params}), **(context or {}))
