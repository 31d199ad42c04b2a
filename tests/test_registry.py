"""The plugin manager and component tables: discovery, origins, isolation of failures, duplicates."""

from __future__ import annotations

import subprocess
import sys

import pytest
from plugin_sources import (
    BROKEN_IMPORT,
    DUPLICATE_OF_BUILTIN,
    GOOD,
    MISSPELT_HOOK,
    RAISING_HOOK,
    UNPREFIXED,
    TinyPlugin,
    module,
)

from fusionrec.core.errors import ConfigError, FusionrecError, PluginError, UnknownComponentError
from fusionrec.registry import (
    DEFAULT_PLUGINS,
    KINDS,
    build_plugin_manager,
    build_registry,
    get_plugin_manager,
    get_registry,
    hookspecs,
    reset,
)
from fusionrec.registry.testing import make_registry


def registry_from(**kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("disabled", ())
    return build_registry(build_plugin_manager(**kwargs))


def test_builtins_register_with_their_origin() -> None:
    registry = registry_from(autoload=False)
    fusers = registry.table("fuser")
    assert {"attention", "concat"} <= set(fusers)
    info = fusers["attention"]
    assert info.plugin == "fusionrec.plugins.fusers.attention"
    assert info.distribution == "fusionrec"
    assert info.version
    record = registry.plugins["fusionrec.plugins.fusers.attention"]
    assert record.source == "builtin" and record.error is None
    assert record.components == ["fuser:attention"]


def test_every_kind_has_a_hook_and_a_table() -> None:
    registry = registry_from(autoload=False)
    hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert {kind.hook for kind in KINDS} == hooks
    assert set(registry.tables) == {kind.name for kind in KINDS}


def test_entry_point_plugin_is_discovered_with_distribution(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("acme-fusers", "1.2.0", {"acme": "acme_fusers"}, {"acme_fusers": GOOD.replace("{prefix}", "acme")})
    registry = registry_from()
    info = registry.table("fuser")["acme.toy"]
    assert (info.plugin, info.distribution, info.version) == ("acme", "acme-fusers", "1.2.0")
    assert registry.plugins["acme"].source == "entrypoint"
    assert registry.create("fuser", "acme.toy", size=5) == {"size": 5}


def test_autoload_can_be_switched_off(fake_dist, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_dist("acme-fusers", "1.2.0", {"acme": "acme_fusers"}, {"acme_fusers": GOOD.replace("{prefix}", "acme")})
    monkeypatch.setenv("FUSIONREC_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = build_registry(build_plugin_manager())
    assert "acme.toy" not in registry.table("fuser")
    assert "acme" not in registry.plugins


def test_plugins_can_be_blocked_by_name(fake_dist, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_dist("acme-fusers", "1.2.0", {"acme": "acme_fusers"}, {"acme_fusers": GOOD.replace("{prefix}", "acme")})
    monkeypatch.setenv("FUSIONREC_DISABLE_PLUGINS", "acme, fusionrec.plugins.fusers.concat")
    registry = build_registry(build_plugin_manager())
    fusers = set(registry.table("fuser"))
    assert "attention" in fusers
    assert not fusers & {"acme.toy", "concat"}
    assert registry.plugins["acme"].blocked and registry.plugins["acme"].distribution == "acme-fusers"
    assert registry.plugins["fusionrec.plugins.fusers.concat"].status == "blocked (FUSIONREC_DISABLE_PLUGINS)"
    message = registry.table("fuser").unknown_message("acme.toy")
    assert "Installed but not loaded: 'fusionrec.plugins.fusers.concat' (blocked), 'acme' (blocked)" in message


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_load(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("broken-plugin", "0.3.0", {"broken": "broken_mod"}, {"broken_mod": BROKEN_IMPORT})
    fake_dist("acme-fusers", "1.2.0", {"acme": "acme_fusers"}, {"acme_fusers": GOOD.replace("{prefix}", "acme")})
    registry = registry_from()
    record = registry.plugins["broken"]
    assert record.distribution == "broken-plugin" and record.version == "0.3.0"
    assert "RuntimeError: this plugin cannot be imported" in (record.error or "")
    assert "acme.toy" in registry.table("fuser")
    assert "attention" in registry.table("fuser")


def test_misspelt_hook_marks_that_plugin_failed_with_a_suggestion(fake_dist) -> None:  # type: ignore[no-untyped-def]
    fake_dist("typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": MISSPELT_HOOK})
    registry = registry_from()
    error = registry.plugins["typo"].error or ""
    assert "unknown hook 'register_fuser'" in error
    assert "Did you mean 'register_fusers'?" in error
    assert "attention" in registry.table("fuser")


def test_third_party_names_need_the_plugin_prefix() -> None:
    registry = make_registry(("plain", module("plain", UNPREFIXED)))
    error = registry.plugins["plain"].error or ""
    assert "must be prefixed with the plugin's name: 'plain.toy'" in error
    assert "(at <plain>:6)" in error and "_RegistrationError" not in error  # points at the plugin's own line
    assert "toy" not in registry.table("fuser")


def test_a_raising_hook_discards_everything_that_plugin_registered() -> None:
    registry = make_registry(("raiser", module("raiser", RAISING_HOOK)))
    assert "ValueError: boom" in (registry.plugins["raiser"].error or "")
    assert "raiser.first" not in registry.table("fuser")


def test_two_distributions_claiming_one_plugin_name_fail_naming_both(fake_dist) -> None:  # type: ignore[no-untyped-def]
    # With third-party names prefixed by their plugin's name, two plugins can only clash through the plugin name.
    fake_dist("acme-fusers", "1.2.0", {"acme": "acme_fusers"}, {"acme_fusers": GOOD.replace("{prefix}", "acme")})
    fake_dist("acme-fork", "0.1.0", {"acme": "acme_fork"}, {"acme_fork": GOOD.replace("{prefix}", "acme")})
    with pytest.raises(PluginError) as excinfo:
        registry_from()
    message = str(excinfo.value)
    assert "plugin name 'acme' is used by two distributions: acme-fork and acme-fusers" in message
    assert "FUSIONREC_DISABLE_PLUGINS=acme" in message


def test_a_builtin_registering_a_taken_name_is_a_clash() -> None:
    builtins = (*DEFAULT_PLUGINS, "plugin_sources_dup")
    sys.modules["plugin_sources_dup"] = module("plugin_sources_dup", DUPLICATE_OF_BUILTIN)
    try:
        with pytest.raises(PluginError, match="fuser 'attention' is registered by two plugins"):
            registry_from(builtins=builtins, autoload=False)
    finally:
        del sys.modules["plugin_sources_dup"]


def test_unknown_component_lists_available_and_suggests() -> None:
    registry = registry_from(autoload=False)
    with pytest.raises(UnknownComponentError) as excinfo:
        registry.spec("fuser", {"type": "atention"}, path=("fuser",))
    text = str(excinfo.value)
    assert "fuser.type: unknown fuser 'atention'. Did you mean 'attention'?" in text
    assert "Available: attention, concat" in text


def test_empty_kind_says_how_to_get_one() -> None:
    registry = registry_from(builtins=[p for p in DEFAULT_PLUGINS if ".rankers." not in p], autoload=False)
    with pytest.raises(UnknownComponentError, match="no ranker is registered"):
        registry.spec("ranker", {"type": "logistic"})


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(FusionrecError, match=r"unknown component kind 'fusers'\. Did you mean 'fuser'"):
        registry_from(autoload=False).table("fusers")


def test_factory_errors_are_wrapped_with_the_component_path() -> None:
    registry = registry_from(autoload=False)
    spec = registry.spec("fuser", {"type": "attention"}, path=("fuser",))
    with pytest.raises(ConfigError) as excinfo:
        registry.build(spec, input_dims={"image": 0})
    assert "fuser: fuser 'attention' could not be built: ValueError: input_dims['image'] must be a positive" in str(
        excinfo.value
    )
    assert isinstance(excinfo.value.__cause__, ValueError)


def test_lazy_factory_that_cannot_be_imported_names_plugin_and_target() -> None:
    source = """
from fusionrec.registry import hookimpl

@hookimpl
def register_fusers(register):
    register("lazy.missing", "lazy_nowhere_module:Thing")
"""
    registry = make_registry(("lazy", module("lazy", source)))
    with pytest.raises(PluginError, match="cannot import its factory 'lazy_nowhere_module:Thing'"):
        registry.create("fuser", "lazy.missing")


def test_cached_registry_is_shared_and_resettable() -> None:
    assert get_registry() is get_registry()
    first = get_plugin_manager()
    reset()
    assert get_plugin_manager() is not first


def test_listing_plugins_does_not_import_torch() -> None:
    code = (
        "import sys; from fusionrec.registry import get_registry; r = get_registry(); "
        "r.spec('fuser', {'type': 'attention'}); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr


def test_fusionrec_plugins_fixture_adds_and_removes(fusionrec_plugins) -> None:  # type: ignore[no-untyped-def]
    registry = fusionrec_plugins.add(TinyPlugin(), name="tiny")
    assert "tiny.data" in registry.table("dataset")
    assert get_registry() is registry
    fusionrec_plugins.remove_all()
    assert "tiny.data" not in get_registry().table("dataset")


def test_a_plugin_name_cannot_be_registered_twice() -> None:
    with pytest.raises(PluginError, match="a plugin named 'tiny' is already registered"):
        build_plugin_manager(autoload=False, disabled=(), plugins=[("tiny", TinyPlugin()), ("tiny", TinyPlugin())])


def test_config_errors_from_a_factory_are_anchored_at_the_component() -> None:
    source = """
from fusionrec.core.errors import ConfigError
from fusionrec.registry import hookimpl

def make():
    raise ConfigError.at(("weights",), "no such weights")

@hookimpl
def register_encoders(register):
    register("anchor.enc", make)
"""
    registry = make_registry(("anchor", module("anchor", source)))
    spec = registry.spec("encoder", {"type": "anchor.enc"}, path=("encoders", "image"))
    with pytest.raises(ConfigError) as excinfo:
        registry.build(spec)
    assert excinfo.value.problems[0].path == ("encoders", "image", "weights")
    assert "encoders.image.weights: no such weights" in str(excinfo.value)
