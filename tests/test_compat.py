"""Hook versions: a plugin built for a newer hook set is refused with a message naming both versions, and the
other plugins still load."""

from __future__ import annotations

import json

import pytest

from fusionrec.core.cli import main
from fusionrec.registry import HOOK_VERSION, build_plugin_manager, build_registry, reset
from fusionrec.registry.compat import fusionrec_version

NEWER = f"""
from fusionrec.registry import hookimpl

fusionrec_hook_version = {HOOK_VERSION + 1}

@hookimpl
def register_fusers(register):
    register("future.toy", dict)

@hookimpl
def register_explainers(register):  # a hook of the newer hook set
    register("future.why", dict)
"""

CURRENT = f"""
from fusionrec.registry import hookimpl

fusionrec_hook_version = {HOOK_VERSION}

@hookimpl
def register_fusers(register):
    register("now.toy", dict)
"""

MALFORMED = """
from fusionrec.registry import hookimpl

fusionrec_hook_version = "2"

@hookimpl
def register_fusers(register):
    register("odd.toy", dict)
"""

UNDECLARED_NEW_HOOK = """
from fusionrec.registry import hookimpl

@hookimpl
def register_explainers(register):
    register("quiet.why", dict)
"""

NEW_IMPORT = """
from fusionrec.registry import register_explainer_helper
"""


def registry():  # type: ignore[no-untyped-def]
    return build_registry(build_plugin_manager(disabled=()))


def test_a_plugin_for_a_newer_hook_version_is_refused_naming_both_versions(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("fusionrec-future", "2.0.0", {"future": "future_mod"}, {"future_mod": NEWER})
    fake_dist("fusionrec-now", "1.0.0", {"now": "now_mod"}, {"now_mod": CURRENT})
    reg = registry()
    error = reg.plugins["future"].error or ""
    assert error == (
        f"built for fusionrec hook version {HOOK_VERSION + 1}; this fusionrec {fusionrec_version()} supports version "
        f"{HOOK_VERSION}: upgrade fusionrec or install an older fusionrec-future"
    )
    assert "future.toy" not in reg.table("fuser")
    assert "now.toy" in reg.table("fuser") and "attention" in reg.table("fuser")  # the others still load
    assert reg.plugins["now"].error is None


def test_the_cli_lists_and_warns_about_the_refused_plugin(fake_dist, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_dist("fusionrec-future", "2.0.0", {"future": "future_mod"}, {"future_mod": NEWER})
    monkeypatch.delenv("FUSIONREC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reset()
    try:
        assert main(["plugins", "--json"]) == 0
        rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows["future"]["distribution"] == "fusionrec-future" and rows["future"]["components"] == []
        assert f"hook version {HOOK_VERSION + 1}" in rows["future"]["error"]
        assert main(["plugins"]) == 0
        warning = capsys.readouterr().err
        assert "warning: plugin 'future' (fusionrec-future 2.0.0) failed to load and is skipped: built for" in warning
        assert "AttributeError" not in warning
    finally:
        reset()


def test_a_malformed_hook_version_is_reported(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("fusionrec-odd", "0.1", {"odd": "odd_mod"}, {"odd_mod": MALFORMED})
    error = registry().plugins["odd"].error or ""
    assert error.startswith("fusionrec_hook_version must be a positive integer") and "got '2'" in error


def test_an_unknown_hook_without_a_close_match_suggests_upgrading(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("fusionrec-quiet", "1.0", {"quiet": "quiet_mod"}, {"quiet_mod": UNDECLARED_NEW_HOOK})
    error = registry().plugins["quiet"].error or ""
    assert "implements unknown hook 'register_explainers'." in error
    assert f"This fusionrec {fusionrec_version()} has hook version {HOOK_VERSION}." in error
    assert "upgrade fusionrec or install an older fusionrec-quiet" in error


def test_a_misspelt_hook_gets_a_suggestion_not_upgrade_advice() -> None:
    from plugin_sources import MISSPELT_HOOK, module

    reg = build_registry(
        build_plugin_manager(disabled=(), autoload=False, plugins=[("typo", module("typo", MISSPELT_HOOK))])
    )
    error = reg.plugins["typo"].error or ""
    assert "Did you mean 'register_fusers'?" in error and "upgrade" not in error


def test_importing_a_name_fusionrec_lacks_hints_at_a_newer_fusionrec(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("fusionrec-later", "3.0", {"later": "later_mod"}, {"later_mod": NEW_IMPORT})
    error = registry().plugins["later"].error or ""
    assert error.startswith("ImportError: cannot import name 'register_explainer_helper'")
    assert f"may need a newer fusionrec than this {fusionrec_version()} (hook version {HOOK_VERSION})" in error


@pytest.mark.parametrize("kind", ["fuser", "retriever"])
def test_the_scaffold_declares_the_current_hook_version(kind: str) -> None:
    from fusionrec.registry.scaffold import package_files

    plugin = package_files("acme", kind)["fusionrec_acme/plugin.py"]
    assert f"\nfusionrec_hook_version = {HOOK_VERSION}\n" in plugin
