"""Which plugins this fusionrec can load: the hook-set version a plugin declares, checked at start-up.

A plugin states the version of the hook set it was written against with a module-level (or class-level) attribute::

    fusionrec_hook_version = 1

fusionrec loads a plugin built for its own :data:`~fusionrec.registry.hookspecs.HOOK_VERSION` or an older one, and
marks one built for a newer version failed with a message naming both versions, before pluggy sees its hooks (a
newer plugin may implement hooks this fusionrec lacks). A plugin that declares nothing is taken to be built for
version 1. ``fusionrec plugins new`` writes the current version into every plugin it generates.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
from collections.abc import Sequence

from fusionrec.registry.hookspecs import HOOK_VERSION

HOOK_VERSION_ATTRIBUTE = "fusionrec_hook_version"
"""The attribute a plugin module (or object) sets to the hook version it was built for."""

TYPO_RATIO = 0.9
"""Similarity above which an unknown hook name is taken for a typo of a known one (``register_fuser``)."""


def fusionrec_version() -> str:
    """The installed fusionrec's version (``"unknown"`` when it is not installed as a distribution)."""
    try:
        return metadata.version("fusionrec")
    except metadata.PackageNotFoundError:
        return "unknown"


def _older(distribution: str | None) -> str:
    return f"an older {distribution}" if distribution else "an older version of the plugin"


def hook_version_problem(plugin: object, distribution: str | None) -> str | None:
    """Why this fusionrec cannot load ``plugin`` because of its declared hook version, or ``None`` when it can.

    Args:
        plugin: the plugin module or object.
        distribution: the distribution that ships it, for the advice (``install an older fusionrec-x``).
    """
    declared = getattr(plugin, HOOK_VERSION_ATTRIBUTE, None)
    if declared is None:
        return None
    if type(declared) is not int or declared < 1:
        return (
            f"{HOOK_VERSION_ATTRIBUTE} must be a positive integer, the fusionrec hook version the plugin was built "
            f"for (this fusionrec has {HOOK_VERSION}), got {declared!r}"
        )
    if declared > HOOK_VERSION:
        return (
            f"built for fusionrec hook version {declared}; this fusionrec {fusionrec_version()} supports version "
            f"{HOOK_VERSION}: upgrade fusionrec or install {_older(distribution)}"
        )
    return None


def unknown_hook_advice(hook: str, known: Sequence[str], distribution: str | None) -> str:
    """What to add to an ``implements unknown hook`` message: this fusionrec's hook version, and, unless the name is
    a typo of a known hook (a near miss, one or two letters off), how to get a fusionrec that has it."""
    advice = f" This fusionrec {fusionrec_version()} has hook version {HOOK_VERSION}."
    typo = any(difflib.SequenceMatcher(None, hook, name).ratio() >= TYPO_RATIO for name in known)
    if not typo:
        advice += (
            f" If the plugin was built for a newer fusionrec, upgrade fusionrec or install {_older(distribution)}."
        )
    return advice


def import_advice(exc: BaseException) -> str:
    """A hint for a plugin that failed to import a name from fusionrec: it may need a newer fusionrec."""
    if not isinstance(exc, ImportError):
        return ""
    name = exc.name or ""
    if name.startswith("fusionrec") or "from 'fusionrec" in str(exc):
        return (
            f". The plugin may need a newer fusionrec than this {fusionrec_version()} (hook version {HOOK_VERSION}): "
            "upgrade fusionrec or install an older version of the plugin"
        )
    return ""
