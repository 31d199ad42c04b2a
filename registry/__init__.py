"""fusionrec.registry: hookspecs, the plugin manager and the component tables.

Plugin authors need two names from here: :data:`hookimpl` to mark hook implementations and, in tests, the pytest
plugin :mod:`fusionrec.registry.testing`.
"""

from __future__ import annotations

from fusionrec.registry.hookspecs import HOOK_VERSION, Register, hookimpl, hookspec
from fusionrec.registry.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    FusionrecPluginManager,
    PluginInfo,
    build_plugin_manager,
    build_registry,
    get_plugin_manager,
    get_registry,
    reset,
)
from fusionrec.registry.tables import KINDS, ComponentInfo, ComponentTable, Kind, Registry

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "HOOK_VERSION",
    "KINDS",
    "ComponentInfo",
    "ComponentTable",
    "FusionrecPluginManager",
    "Kind",
    "PluginInfo",
    "Register",
    "Registry",
    "build_plugin_manager",
    "build_registry",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset",
]
