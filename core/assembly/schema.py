"""JSON Schema (draft 2020-12) of pipeline files, built from the installed plugins' parameter models.

``fusionrec schema`` writes it so that editors complete and check pipeline YAML (yaml-language-server, used by the
VS Code YAML extension, reads a ``# yaml-language-server: $schema=...`` first line). The layout:

- the top level is the sections of :data:`fusionrec.core.assembly.config.SECTIONS`, ``fusionrec`` required and constant;
- each component section is ``$defs/kind.<kind>``: a ``oneOf`` over the kind's components, each an object whose
  ``type`` is a ``const`` and whose other keys are the component's parameters (``additionalProperties: false``),
  plus the bare-name shorthand (``fuser: attention``) as an ``enum`` of the components without required parameters;
- a parameter that is itself a component (``Component("split")``) refers to that kind's ``oneOf``;
- ``evaluate.metrics`` items are ``name@K`` patterns over the registered metrics.

The schema is an aid for editors; ``fusionrec validate`` remains the authority. It is a little stricter in one way:
pydantic's lax mode accepts ``dim: "64"`` for an integer, the schema wants ``dim: 64``.
"""

from __future__ import annotations

import re
from typing import Any

from fusionrec.core.assembly.config import COMPONENT_SECTIONS, MODALITY_RE, SCHEMA_VERSION, SECTIONS, SETTINGS_SECTIONS
from fusionrec.core.params import Params
from fusionrec.registry import Registry, get_registry
from fusionrec.registry.compat import fusionrec_version

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KIND_KEY = "x-fusionrec-kind"

SECTION_DESCRIPTIONS: dict[str, str] = {
    "fusionrec": f"Version of the pipeline file format; this fusionrec reads version {SCHEMA_VERSION}.",
    "data": "The dataset: where items and interactions come from, and how they are split.",
    "encoders": "One encoder per modality: modality name → encoder block.",
    "fuser": "How an item's per-modality vectors become one vector.",
    "user": "The user tower: a user's history → a user vector.",
    "model": "A whole model (a baseline such as bpr_mf or lightgcn) trained instead of the fuser + user two-tower.",
    "train": "Training settings.",
    "retriever": "The nearest-neighbour index over item vectors.",
    "ranker": "The classifier that reranks retrieved candidates.",
    "evaluate": "Evaluation settings.",
}


def pipeline_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema of pipeline files for the components in ``registry`` (default: everything installed)."""
    return _Builder(registry if registry is not None else get_registry()).build()


class _Builder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.defs: dict[str, Any] = {}

    def build(self) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "fusionrec": {"const": SCHEMA_VERSION, "description": SECTION_DESCRIPTIONS["fusionrec"]}
        }
        for section in SECTIONS:
            if section in COMPONENT_SECTIONS:
                properties[section] = _nullable(self.kind_ref(COMPONENT_SECTIONS[section]))
            elif section == "encoders":
                encoders = {
                    "type": "object",
                    "propertyNames": {"pattern": MODALITY_RE.pattern},
                    "additionalProperties": self.kind_ref("encoder"),
                }
                properties[section] = _nullable(encoders)
            elif section in SETTINGS_SECTIONS:
                properties[section] = _nullable(self.settings(section, SETTINGS_SECTIONS[section]))
            if section in SECTION_DESCRIPTIONS:
                properties[section].setdefault("description", SECTION_DESCRIPTIONS[section])
        installed = sorted(name for name, record in self.registry.plugins.items() if record.loaded)
        return {
            "$schema": DIALECT,
            "title": "fusionrec pipeline file",
            "description": (
                f"Written by `fusionrec schema` (fusionrec {fusionrec_version()}) from the parameter models of the "
                f"installed plugins: {', '.join(installed) or 'none'}. Regenerate it after installing a plugin."
            ),
            "type": "object",
            "properties": properties,
            "required": ["fusionrec"],
            "additionalProperties": False,
            "$defs": dict(sorted(self.defs.items())),
        }

    def kind_ref(self, kind: str) -> dict[str, Any]:
        """A reference to ``$defs/kind.<kind>``, building it (and its components) on first use."""
        key = f"kind.{kind}"
        if key not in self.defs:
            self.defs[key] = {}  # reserved first: a nested component may refer back to this kind
            self.defs[key] = self.kind_schema(kind)
        return {"$ref": f"#/$defs/{key}"}

    def kind_schema(self, kind: str) -> dict[str, Any]:
        table = self.registry.table(kind)
        if not table:
            return {
                "description": f"No {kind} is installed: install a plugin that provides one (`fusionrec plugins`).",
                "not": {},
            }
        branches: list[dict[str, Any]] = []
        for name, info in table.items():
            self.defs[f"{kind}.{name}"] = self.component(kind, name, info.params)
            branches.append({"$ref": f"#/$defs/{kind}.{name}"})
        shorthand = [
            name
            for name, info in table.items()
            if not any(field.is_required() for field in info.params.model_fields.values())
        ]
        if shorthand:
            branches.append(
                {
                    "type": "string",
                    "enum": shorthand,
                    "description": f"Short for {{type: NAME}}: a {kind} with defaults.",
                }
            )
        return {"description": f"A {kind}: {{type: NAME, ...parameters}}.", "oneOf": branches}

    def component(self, kind: str, name: str, params: type[Params]) -> dict[str, Any]:
        schema = self.model(f"{kind}.{name}", params)
        properties = {"type": {"const": name, "description": f"The {kind} '{name}'."}}
        properties.update(schema.get("properties", {}))
        out: dict[str, Any] = {
            "type": "object",
            "title": f"{kind} {name}",
            "properties": properties,
            "required": ["type", *schema.get("required", [])],
            "additionalProperties": False,
        }
        if schema.get("description"):
            out["description"] = schema["description"]  # the model's own docstring (pydantic's)
        return out

    def settings(self, section: str, model: type[Params]) -> dict[str, Any]:
        schema = self.model(f"settings.{section}", model)
        schema.pop("title", None)
        if section == "evaluate" and "metrics" in schema.get("properties", {}):
            schema["properties"]["metrics"]["items"] = self.metric_items()
        return schema

    def metric_items(self) -> dict[str, Any]:
        names = list(self.registry.table("metric"))
        if not names:
            return {"description": "No metric is installed: install a plugin that provides one.", "not": {}}
        alternatives = "|".join(re.escape(name) for name in names)
        return {
            "type": "string",
            "pattern": f"^({alternatives})@[1-9][0-9]*$",
            "description": f"A metric as name@K; installed metrics: {', '.join(names)}.",
            "examples": [f"{name}@10" for name in names],
        }

    def model(self, prefix: str, model: type[Params]) -> dict[str, Any]:
        """A parameter model's schema, its own ``$defs`` moved to the top under ``prefix``, nested kinds linked."""
        schema = model.model_json_schema(ref_template=f"#/$defs/{prefix}.{{model}}")
        for name, definition in schema.pop("$defs", {}).items():
            self.defs[f"{prefix}.{name}"] = self.link_kinds(definition)
        result: dict[str, Any] = self.link_kinds(schema)
        return result

    def link_kinds(self, node: Any) -> Any:
        """Replace every nested-component placeholder (``x-fusionrec-kind``) by a reference to its kind."""
        if isinstance(node, list):
            return [self.link_kinds(item) for item in node]
        if not isinstance(node, dict):
            return node
        if KIND_KEY in node:
            kept = {key: value for key, value in node.items() if key in ("title", "description", "default")}
            return {**self.kind_ref(str(node[KIND_KEY])), **kept}
        return {key: self.link_kinds(value) for key, value in node.items()}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A section may be given as null (or left empty): it then counts as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


__all__ = ["DIALECT", "pipeline_schema"]
