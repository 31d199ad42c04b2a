"""The plugin manager: built-ins, then installed plugins, loaded once in a fixed order.

Order: hookspecs; blocked names (``FUSIONREC_DISABLE_PLUGINS``); built-ins from :data:`DEFAULT_PLUGINS`; entry
points of group ``fusionrec`` (unless ``FUSIONREC_DISABLE_PLUGIN_AUTOLOAD`` is set); ``check_pending()``. A plugin
that fails to import, or whose hooks fail, is recorded with its error and skipped; the others still load. Two
plugins registering the same name is a start-up error naming both.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from fusionrec.core.errors import PluginError, did_you_mean
from fusionrec.core.params import NoParams, Params
from fusionrec.registry import hookspecs
from fusionrec.registry.compat import hook_version_problem, import_advice, unknown_hook_advice
from fusionrec.registry.tables import KINDS, NAME_RE, ComponentInfo, ComponentTable, Registry

DEFAULT_PLUGINS: tuple[str, ...] = (
    "fusionrec.plugins.fusers.concat",
    "fusionrec.plugins.fusers.attention",
    "fusionrec.plugins.fusers.cross_attention",
    "fusionrec.plugins.fusers.gated",
    "fusionrec.plugins.fusers.low_rank",
    "fusionrec.plugins.fusers.mean",
    "fusionrec.plugins.rankers.logistic",
    "fusionrec.plugins.rankers.mlp",
    "fusionrec.plugins.rankers.lightgbm",
    "fusionrec.plugins.datasets.movielens",
    "fusionrec.plugins.datasets.table",
    "fusionrec.plugins.splits.per_user",
    "fusionrec.plugins.splits.cold_items",
    "fusionrec.plugins.splits.files",
    "fusionrec.plugins.encoders.timm",
    "fusionrec.plugins.encoders.cnn",
    "fusionrec.plugins.encoders.sentence_transformer",
    "fusionrec.plugins.encoders.rnn",
    "fusionrec.plugins.encoders.use_multilingual",
    "fusionrec.plugins.encoders.bow",
    "fusionrec.plugins.retrievers.exact",
    "fusionrec.plugins.retrievers.faiss",
    "fusionrec.plugins.retrievers.milvus",
    "fusionrec.plugins.user_towers.towers",
    "fusionrec.plugins.metrics.top_k",
    "fusionrec.plugins.models.baselines",
)
"""Module names of the built-in plugins, registered under these names."""

ENTRY_POINT_GROUP = "fusionrec"
DISABLE_ENV = "FUSIONREC_DISABLE_PLUGINS"
NO_AUTOLOAD_ENV = "FUSIONREC_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginInfo:
    """What is known about one plugin.

    Attributes:
        name: the plugin's name (a built-in's module name; a third party's entry-point name).
        source: ``"builtin"``, ``"entrypoint"`` or ``"manual"`` (registered by code, e.g. a test).
        module: the module (or object) name it was loaded from.
        distribution: the distribution that ships it, when known.
        version: that distribution's version.
        error: why it failed to load, or ``None`` when it loaded.
        components: ``kind:name`` of everything it registered.
        blocked: it is installed but switched off (``FUSIONREC_DISABLE_PLUGINS``).
    """

    name: str
    source: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    components: list[str] = field(default_factory=list)
    blocked: bool = False

    @property
    def loaded(self) -> bool:
        return self.error is None and not self.blocked

    @property
    def status(self) -> str:
        """``ok``, ``blocked`` or ``failed: <why>``."""
        if self.blocked:
            return f"blocked ({DISABLE_ENV})"
        return "ok" if self.error is None else f"failed: {self.error}"

    @property
    def origin(self) -> str:
        dist = f" ({self.distribution} {self.version or '?'})" if self.distribution else ""
        return f"'{self.name}'{dist}"


class FusionrecPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that also records each plugin's origin and load errors."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}

    def add(self, plugin: object, name: str, source: str = "manual", **info: Any) -> None:
        """Register ``plugin`` under ``name``, recording (not raising) a hook-signature error."""
        if name in self.info or self.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered; choose another name")
        module = getattr(plugin, "__name__", type(plugin).__name__)
        record = PluginInfo(name, source, module, **info)
        self.info[name] = record
        # before pluggy sees its hooks: a plugin for a newer hook set may implement hooks this fusionrec lacks
        record.error = hook_version_problem(plugin, record.distribution)
        if record.error is not None:
            return
        try:
            self.register(plugin, name=name)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            if self.has_plugin(name):
                self.unregister(name=name)

    def check_pending_plugins(self) -> None:
        """Like ``check_pending()``, but a plugin with a misspelt hook is unregistered and marked failed."""
        known = [kind.hook for kind in KINDS]
        for hook_name in list(self.hook.__dict__):
            if hook_name.startswith("_"):
                continue
            caller = getattr(self.hook, hook_name)
            if caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                record = self.info.get(impl.plugin_name)
                hint = did_you_mean(hook_name, known)
                advice = unknown_hook_advice(hook_name, known, record.distribution if record else None)
                message = f"implements unknown hook '{hook_name}'.{hint} Hooks: {', '.join(known)}.{advice}"
                if record is not None:
                    record.error = message
                self.unregister(name=impl.plugin_name)
        self.check_pending()


def _distribution_of(module: str) -> tuple[str | None, str | None]:
    top = module.split(".")[0]
    # fusionrec's own modules need no scan: packages_distributions() reads every installed file list (~0.5 s with
    # torch installed), and it ran once per built-in plugin on every start and in every isolated test registry
    names = ["fusionrec"] if top == "fusionrec" else metadata.packages_distributions().get(top, [])
    for dist in names:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def build_plugin_manager(
    *,
    builtins: Iterable[str] = DEFAULT_PLUGINS,
    disabled: Iterable[str] | None = None,
    autoload: bool | None = None,
    plugins: Iterable[tuple[str, object]] = (),
) -> FusionrecPluginManager:
    """Build a plugin manager.

    Args:
        builtins: module names of the built-in plugins.
        disabled: plugin names to block; default from ``FUSIONREC_DISABLE_PLUGINS`` (comma-separated).
        autoload: load entry points of group ``fusionrec``; default true unless
            ``FUSIONREC_DISABLE_PLUGIN_AUTOLOAD`` is set.
        plugins: extra ``(name, plugin)`` pairs registered last (tests, applications embedding fusionrec).
    """
    pm = FusionrecPluginManager()
    for name in _env_list(DISABLE_ENV) if disabled is None else disabled:
        pm.set_blocked(name)
    for module_name in builtins:
        dist, version = _distribution_of(module_name)
        if pm.is_blocked(module_name):
            pm.info[module_name] = PluginInfo(module_name, "builtin", module_name, dist, version, blocked=True)
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            pm.info[module_name] = PluginInfo(
                module_name, "builtin", module_name, dist, version, error=_describe_exception(exc)
            )
            continue
        pm.add(module, module_name, "builtin", distribution=dist, version=version)
    if autoload if autoload is not None else not os.environ.get(NO_AUTOLOAD_ENV):
        _load_entry_points(pm)
    for name, plugin in plugins:
        pm.add(plugin, name, "manual")
    pm.check_pending_plugins()
    return pm


def _load_entry_points(pm: FusionrecPluginManager) -> None:
    seen: set[str] = set()
    for dist in sorted(metadata.distributions(), key=lambda d: str(d.metadata["Name"] or "").lower()):
        dist_name = str(dist.metadata["Name"])
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            if pm.is_blocked(ep.name):
                pm.info[ep.name] = PluginInfo(ep.name, "entrypoint", ep.value, dist_name, dist.version, blocked=True)
                continue
            if ep.name in seen or pm.has_plugin(ep.name):
                previous = pm.info.get(ep.name)
                if previous is not None and previous.distribution == dist_name:
                    continue  # the same distribution seen twice on sys.path
                pm.info.setdefault(ep.name, PluginInfo(ep.name, "entrypoint", ep.value, dist_name, dist.version))
                if previous is not None and previous.distribution != dist_name:
                    raise PluginError(
                        f"plugin name '{ep.name}' is used by two distributions: {previous.distribution} and "
                        f"{dist_name}. Uninstall one, or block it with {DISABLE_ENV}={ep.name}."
                    )
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:
                error = _describe_exception(exc) + import_advice(exc)
                pm.info[ep.name] = PluginInfo(ep.name, "entrypoint", ep.value, dist_name, dist.version, error=error)
                continue
            pm.add(plugin, ep.name, "entrypoint", distribution=dist_name, version=dist.version)


def _describe_exception(exc: BaseException) -> str:
    """``Type: message (at file:line)``, the location being the innermost frame outside this module."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, _RegistrationError):
        return f"{exc}{where}"
    return f"{type(exc).__name__}: {exc}{where}"


def build_registry(pm: FusionrecPluginManager) -> Registry:
    """Call every plugin's ``register_*`` hooks and build the component tables.

    Each plugin's hook is called on its own, with a ``register`` callback that knows which plugin is calling: that
    is how every name records its plugin. A plugin whose hook raises, or that registers an invalid name, is marked
    failed and none of its components are kept.

    Raises:
        PluginError: two plugins registered the same name for the same kind.
    """
    staged: dict[str, list[ComponentInfo]] = {}
    for plugin_name, record in pm.info.items():
        if not record.loaded or not pm.has_plugin(plugin_name):
            continue
        mine: list[ComponentInfo] = []
        try:
            for kind in KINDS:
                for impl in getattr(pm.hook, kind.hook).get_hookimpls():
                    if impl.plugin_name == plugin_name:
                        register = _make_register(kind.name, record, mine)
                        impl.function(**{arg: register for arg in impl.argnames})
        except Exception as exc:
            record.error = _describe_exception(exc)
            continue
        staged[plugin_name] = mine
        record.components = [f"{info.kind}:{info.name}" for info in mine]

    entries: dict[str, dict[str, ComponentInfo]] = {kind.name: {} for kind in KINDS}
    clashes: list[str] = []
    for infos in staged.values():
        for info in infos:
            table = entries[info.kind]
            if info.name in table:
                first = table[info.name]
                clashes.append(
                    f"{info.kind} '{info.name}' is registered by two plugins: {first.origin} and {info.origin}. "
                    f"Uninstall or block one ({DISABLE_ENV}={info.plugin})."
                )
                continue
            table[info.name] = info
    if clashes:
        raise PluginError("\n".join(clashes))
    idle = [f"'{r.name}' ({'blocked' if r.blocked else 'failed'})" for r in pm.info.values() if not r.loaded]
    note = f"Installed but not loaded: {', '.join(idle)}; see `fusionrec plugins`." if idle else ""
    tables = {kind.name: ComponentTable(kind, entries[kind.name], note) for kind in KINDS}
    return Registry(tables, pm.info)


class _RegistrationError(Exception):
    pass


def _make_register(kind: str, record: PluginInfo, into: list[ComponentInfo]) -> Any:
    builtin = record.source == "builtin"

    def register(name: str, factory: Any, *, params: type[Params] | None = None) -> None:
        bare = name
        if not builtin:
            prefix, dot, bare = name.partition(".")
            if not dot or prefix != record.name:
                raise _RegistrationError(
                    f"{kind} name {name!r} must be prefixed with the plugin's name: '{record.name}.{name}'"
                )
        if not NAME_RE.match(bare):
            raise _RegistrationError(f"{kind} name {name!r} is not a lower-case identifier ([a-z][a-z0-9_]*)")
        if params is None:
            params = NoParams
        if not (isinstance(params, type) and issubclass(params, Params)):
            raise _RegistrationError(
                f"{kind} {name!r}: params must be a subclass of fusionrec.core.params.Params, got {params!r}"
            )
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise _RegistrationError(
                f"{kind} {name!r}: factory must be callable or a 'module:attribute' string, got {factory!r}"
            )
        if any(info.kind == kind and info.name == name for info in into):
            raise _RegistrationError(f"{kind} {name!r} registered twice by the same plugin")
        into.append(ComponentInfo(kind, name, factory, params, record.name, record.distribution, record.version))

    return register


@functools.cache
def get_plugin_manager() -> FusionrecPluginManager:
    """The process-wide plugin manager, built on first use. :func:`reset` forgets it."""
    return build_plugin_manager()


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry of every installed component, built on first use."""
    return build_registry(get_plugin_manager())


def reset() -> None:
    """Forget the cached plugin manager and registry (tests; after installing a plugin at run time)."""
    get_registry.cache_clear()
    get_plugin_manager.cache_clear()
