"""Testing helpers for fusionrec and its plugin authors, shipped as a pytest plugin.

Installed with fusionrec (entry point ``pytest11: fusionrec``), so in any project's tests:

- the fixture ``fusionrec_registry`` builds an isolated registry from the built-ins plus the plugins you pass,
  without touching the process-wide one and without loading installed entry points;
- the fixture ``fusionrec_plugins`` adds plugins to the process-wide registry for one test (the CLI and
  ``load_pipeline`` then see them) and removes them afterwards;
- :func:`check_component` runs the contract every component of a kind must meet (shapes, dtypes, masks,
  gradients, determinism, save/load, parameter validation).

This module stays light: torch is imported only when a contract runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from fusionrec.registry.manager import (
    DEFAULT_PLUGINS,
    build_plugin_manager,
    build_registry,
    get_plugin_manager,
    get_registry,
)
from fusionrec.registry.tables import Registry

PluginArg = object | tuple[str, object]


def _named(plugins: Iterable[PluginArg]) -> list[tuple[str, object]]:
    named = []
    for plugin in plugins:
        if isinstance(plugin, tuple):
            named.append(plugin)
        else:
            named.append((getattr(plugin, "__name__", type(plugin).__name__), plugin))
    return named


def make_registry(*plugins: PluginArg, builtins: Iterable[str] = DEFAULT_PLUGINS, autoload: bool = False) -> Registry:
    """An isolated registry: the built-ins, then ``plugins``, without loading installed entry points.

    Each plugin is registered as a third-party one, so its component names must carry its plugin name as prefix.
    Pass ``(name, plugin)`` pairs to give the name your entry point has: ``make_registry(("gmu", plugin_module))``
    for components called ``gmu.*``. A bare module or object is registered under its ``__name__``.
    """
    pm = build_plugin_manager(builtins=builtins, disabled=(), autoload=autoload, plugins=_named(plugins))
    return build_registry(pm)


def check_component(
    kind: str,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> Any:
    """Check that a registered component meets its kind's contract; returns the built component (``None`` for a
    dataset whose example names data this machine lacks: its paths must exist to validate).

    Args:
        kind: the component kind (``"fuser"``, …).
        name: its registered name.
        params: parameters to build it with (default: its defaults).
        context: the kind's context arguments (default: a small example, e.g. two modalities for fusers).
        registry: where to look it up (default: the process-wide registry).

    Raises:
        AssertionError: a contract point fails; the message says which.
    """
    from fusionrec.registry.contracts import run_contract

    return run_contract(kind, name, params=params, context=context, registry=registry)


class PluginInstaller:
    """Adds plugins to the process-wide plugin manager for the duration of one test."""

    def __init__(self) -> None:
        self._names: list[str] = []

    def add(self, plugin: object, name: str | None = None) -> Registry:
        """Register ``plugin`` (under ``name``, default its ``__name__``) and return the rebuilt registry."""
        ((name, plugin),) = _named([(name, plugin)] if name else [plugin])
        pm = get_plugin_manager()
        pm.add(plugin, name, "manual")
        pm.check_pending_plugins()
        self._names.append(name)
        get_registry.cache_clear()
        return get_registry()

    def remove_all(self) -> None:
        pm = get_plugin_manager()
        for name in self._names:
            if pm.has_plugin(name):
                pm.unregister(name=name)
            pm.info.pop(name, None)
        self._names.clear()
        get_registry.cache_clear()


@pytest.fixture
def fusionrec_registry() -> Callable[..., Registry]:
    """A factory of isolated registries: ``fusionrec_registry(my_plugin_module)``. See :func:`make_registry`."""
    return make_registry


@pytest.fixture
def fusionrec_plugins() -> Iterator[PluginInstaller]:
    """Add plugins to the process-wide registry for one test: ``fusionrec_plugins.add(my_plugin_module)``."""
    installer = PluginInstaller()
    try:
        yield installer
    finally:
        installer.remove_all()


__all__ = ["PluginInstaller", "check_component", "fusionrec_plugins", "fusionrec_registry", "make_registry"]
