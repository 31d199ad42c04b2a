"""The component reference: what ``fusionrec plugins info`` prints and ``docs/components.md`` holds.

Both come from :func:`describe_component`, so the command line and the generated page never disagree. The page is
written by ``fusionrec plugins reference`` (:func:`render_reference`); ``--builtin-only`` builds an isolated
registry of the built-ins (:func:`builtin_registry`), so installed third-party plugins never leak into it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from fusionrec.core.errors import FusionrecError, PluginError, did_you_mean, list_names
from fusionrec.core.params import NoParams, Params
from fusionrec.registry.contracts import example_params
from fusionrec.registry.describe import ParamDoc, describe_params
from fusionrec.registry.manager import DEFAULT_PLUGINS, build_plugin_manager, build_registry
from fusionrec.registry.tables import KINDS, KINDS_BY_NAME, ComponentInfo, Registry

TITLES: dict[str, str] = {
    "encoder": "Encoders",
    "fuser": "Fusers",
    "user_tower": "User towers",
    "retriever": "Retrievers",
    "ranker": "Rankers",
    "dataset": "Datasets",
    "split": "Splits",
    "metric": "Metrics",
    "model": "Models",
}
"""Section title of each kind in the reference."""

SECTIONS: dict[str, str] = {
    "encoder": "encoders.<modality>",
    "fuser": "fuser",
    "user_tower": "user",
    "retriever": "retriever",
    "ranker": "ranker",
    "dataset": "data",
    "split": "data.split",
    "metric": "evaluate.metrics",
    "model": "model",
}
"""Where each kind sits in a pipeline file (``fusionrec.core.assembly.config`` has the sections; tests keep the
two equal)."""


@dataclass(frozen=True)
class ComponentDoc:
    """Everything the reference says about one component.

    Attributes:
        kind: the component kind.
        name: its registered name.
        plugin: the plugin that registered it.
        origin: ``'plugin' (distribution version)``.
        builtin: whether that plugin is one of fusionrec's built-ins.
        summary: first line of the factory's docstring.
        details: the parameter model's docstring, when it says more than the summary.
        context: the kind's context arguments, passed to the factory besides the parameters.
        params: one entry per parameter.
        usage: a pipeline line using the component (with the model's example parameters, if it declares some).
    """

    kind: str
    name: str
    plugin: str
    origin: str
    builtin: bool
    summary: str
    details: str
    context: tuple[str, ...]
    params: list[ParamDoc]
    usage: str


def describe_component(info: ComponentInfo, registry: Registry) -> ComponentDoc:
    """Describe one registered component (imports its factory, for the docstring)."""
    record = registry.plugins.get(info.plugin)
    builtin = record is not None and record.source == "builtin"
    summary = info.summary
    own_doc = info.params.__dict__.get("__doc__")  # not the docstring inherited from Params
    model_doc = inspect.cleandoc(own_doc) if isinstance(own_doc, str) and info.params is not NoParams else ""
    details = model_doc.split("\n\n")[0].replace("\n", " ").strip()
    if details == summary:
        details = ""
    return ComponentDoc(
        kind=info.kind,
        name=info.name,
        plugin=info.plugin,
        origin=info.origin,
        builtin=builtin,
        summary=summary,
        details=details,
        context=KINDS_BY_NAME[info.kind].context,
        params=describe_params(info.params),
        usage=usage_line(info.kind, info.name, usage_params(info.params)),
    )


def usage_params(model: type[Params]) -> dict[str, Any]:
    """Parameters for the usage line: none when the defaults build the component, else its declared example.

    The examples exist for the contract tests and are often deliberately tiny (a random-init model at a small
    input size); the defaults are what a user gets, so they make the better usage line whenever they suffice.
    """
    required = any(field.is_required() for field in model.model_fields.values())
    return example_params(model) if required else {}


def usage_line(kind: str, name: str, params: Mapping[str, Any]) -> str:
    """One pipeline line using a component: ``fuser: {type: attention}``, ``evaluate: {metrics: [recall@10]}``."""
    if kind == "metric":
        return f"evaluate: {{metrics: [{name}@10]}}"
    block = _flow({"type": name, **params})
    if kind == "encoder":
        return f"encoders: {{MODALITY: {block}}}"  # the key names the modality: image, text, title, …
    if kind == "split":
        return f"data: {{type: DATASET, split: {block}}}"
    return f"{SECTIONS[kind]}: {block}"


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)).strip()


def builtin_registry() -> Registry:
    """A registry of the built-in plugins only: no entry points, nothing blocked by the environment.

    Raises:
        PluginError: a built-in plugin failed to load (the reference would silently miss its components).
    """
    registry = build_registry(build_plugin_manager(builtins=DEFAULT_PLUGINS, disabled=(), autoload=False))
    failed = [f"{r.name}: {r.error}" for r in registry.plugins.values() if r.error is not None]
    if failed:
        raise PluginError("built-in plugins failed to load:\n" + "\n".join(failed))
    return registry


def select(registry: Registry, plugins: Sequence[str] = ()) -> list[ComponentInfo]:
    """Every component in kind order, then by name; only those of ``plugins`` when given.

    Raises:
        FusionrecError: a named plugin is not installed, or did not load.
    """
    for name in plugins:
        record = registry.plugins.get(name)
        if record is None:
            raise FusionrecError(
                f"no plugin called {name!r}.{did_you_mean(name, list(registry.plugins))} "
                f"Installed: {list_names(list(registry.plugins))}."
            )
        if not record.loaded:
            raise FusionrecError(f"plugin {record.origin} is not loaded: {record.status}")
    wanted = set(plugins)
    return [
        info for kind in KINDS for info in registry.table(kind.name).values() if not wanted or info.plugin in wanted
    ]


def reference_command(*, builtin_only: bool = False, plugins: Iterable[str] = (), out: str | None = None) -> str:
    """The ``fusionrec plugins reference`` command line that writes a page with these options."""
    parts = ["fusionrec plugins reference"]
    if builtin_only:
        parts.append("--builtin-only")
    parts += [f"--plugin {name}" for name in plugins]
    if out is not None:
        parts.append(f"--out {out}")
    return " ".join(parts)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def render_reference(
    registry: Registry, *, plugins: Sequence[str] = (), builtin_only: bool = False, command: str | None = None
) -> str:
    """The reference page, as Markdown.

    Args:
        registry: where the components come from (:func:`builtin_registry` for fusionrec's own page).
        plugins: only these plugins' components (default: every component in ``registry``).
        builtin_only: say so in the introduction (the registry should then be :func:`builtin_registry`).
        command: the command that regenerates the page, named in its first line.
    """
    infos = select(registry, plugins)
    docs = [describe_component(info, registry) for info in infos]
    lines = []
    if command:
        lines += [f"<!-- Generated by `{command}`: do not edit by hand, rerun the command. -->", ""]
    lines += ["# Component reference", ""]
    if builtin_only:
        scope = "Every built-in component of fusionrec"
    elif plugins:
        scope = f"The components of plugin{'s' if len(plugins) > 1 else ''} {', '.join(f'`{p}`' for p in plugins)}"
    else:
        scope = "Every installed component"
    lines += [
        f"{scope}, by kind, each with its parameters: type, default, constraints and description, as the parameter "
        "models declare them. `fusionrec plugins info NAME` prints the same for any installed component, "
        "third-party ones included. A pipeline gives a component as `{type: NAME, PARAMETER: VALUE, ...}`; a "
        "parameter left out takes its default, and an unknown one is an error.",
        "",
        "| kind | pipeline section | components |",
        "|---|---|---|",
    ]
    for kind in KINDS:
        names = [d.name for d in docs if d.kind == kind.name]
        if not names and plugins:
            continue
        listed = ", ".join(f"`{n}`" for n in names) if names else "none"
        lines.append(f"| `{kind.name}` | `{SECTIONS[kind.name]}` | {listed} |")
    for kind in KINDS:
        mine = [d for d in docs if d.kind == kind.name]
        if not mine and (plugins or not builtin_only):
            continue
        context = ", ".join(f"`{arg}`" for arg in kind.context)
        called = f"`factory({', '.join(f'{arg}=...' for arg in kind.context)}{', ' if kind.context else ''}**params)`"
        lines += [
            "",
            f"## {TITLES[kind.name]}",
            "",
            f"Kind `{kind.name}`: implements `{kind.interface}`, registered with `{kind.hook}`, called as {called}"
            + (f" (context: {context})" if context else "")
            + ".",
        ]
        if not mine:
            lines += ["", f"No built-in {kind.name.replace('_', ' ')} yet."]
        for doc in mine:
            lines += ["", *component_markdown(doc, show_version=not builtin_only)]
    return "\n".join(lines) + "\n"


def component_markdown(doc: ComponentDoc, *, show_version: bool = True) -> list[str]:
    """The Markdown lines of one component: heading, summary, origin, usage and the parameter table."""
    lines = [f"### `{doc.name}`", ""]
    if doc.summary:
        lines += [doc.summary, ""]
    if doc.details:
        lines += [doc.details, ""]
    origin = f"`{doc.plugin}`" if doc.builtin or not show_version else doc.origin
    lines += [f"From {'built-in ' if doc.builtin else ''}plugin {origin}. In a pipeline: `{doc.usage}`", ""]
    if not doc.params:
        lines.append("No parameters.")
        return lines
    lines += ["| parameter | type | default | constraints | description |", "|---|---|---|---|---|"]
    for p in doc.params:
        default = "required" if p.required else _code(_cell(p.default or ""))
        row = (_code(p.name), _code(_cell(p.type)), default, _cell(p.constraints), _cell(p.description))
        lines.append("| " + " | ".join(row) + " |")
    return lines


__all__ = [
    "ComponentDoc",
    "builtin_registry",
    "component_markdown",
    "describe_component",
    "reference_command",
    "render_reference",
    "select",
    "usage_line",
]
