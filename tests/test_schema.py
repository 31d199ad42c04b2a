"""`fusionrec schema`: a valid draft 2020-12 JSON Schema that accepts the example pipelines, agrees with
`fusionrec validate` on the pipelines shown in the docs, and rejects unknown types and parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from doc_blocks import blocks, pipeline_blocks
from plugin_sources import TinyPlugin

from fusionrec.core.assembly.config import SECTIONS, parse_pipeline
from fusionrec.core.assembly.schema import DIALECT, pipeline_schema
from fusionrec.core.cli import main
from fusionrec.core.errors import ConfigError
from fusionrec.registry import get_registry
from fusionrec.registry.testing import make_registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
DOC_PIPELINES = pipeline_blocks(DOCS)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = pipeline_schema(get_registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def tiny_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(pipeline_schema(make_registry(("tiny", TinyPlugin()))))


def errors(validator: jsonschema.Draft202012Validator, text: str) -> list[str]:
    return [error.message for error in validator.iter_errors(yaml.safe_load(text))]


def test_the_schema_is_draft_2020_12_with_every_section(validator: jsonschema.Draft202012Validator) -> None:
    schema: dict[str, Any] = validator.schema
    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert list(schema["properties"]) == list(SECTIONS)
    assert schema["additionalProperties"] is False and schema["required"] == ["fusionrec"]


def test_components_are_a_one_of_discriminated_by_type(validator: jsonschema.Draft202012Validator) -> None:
    defs = validator.schema["$defs"]
    branches = defs["kind.fuser"]["oneOf"]
    refs = [b["$ref"] for b in branches if "$ref" in b]
    assert refs == [f"#/$defs/fuser.{name}" for name in get_registry().table("fuser")]
    attention = defs["fuser.attention"]
    assert attention["properties"]["type"] == {"const": "attention", "description": "The fuser 'attention'."}
    assert attention["additionalProperties"] is False and attention["required"] == ["type"]
    assert attention["properties"]["dim"]["exclusiveMinimum"] == 0
    shorthand = next(b for b in branches if b.get("type") == "string")
    assert {"attention", "concat"} <= set(shorthand["enum"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_pipeline_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert errors(validator, path.read_text(encoding="utf-8")) == []


def test_the_docs_show_pipelines() -> None:
    assert len(DOC_PIPELINES) >= 5, [name for name, _ in DOC_PIPELINES]


@pytest.mark.parametrize(("where", "block"), DOC_PIPELINES, ids=[name for name, _ in DOC_PIPELINES])
def test_schema_and_validate_agree_on_the_pipelines_in_the_docs(
    validator: jsonschema.Draft202012Validator, where: str, block: Any
) -> None:
    try:
        parse_pipeline(block.text, registry=get_registry())
        valid = True
    except ConfigError as exc:
        # a path that must exist is checked against the file system, which no schema can see: the docs may show
        # data this checkout lacks
        valid = all("does not exist" in p.message and "expected an existing" in p.message for p in exc.problems)
        reason = str(exc)
    found = errors(validator, block.text)
    if valid:
        assert found == [], f"{where}: fusionrec validate accepts it, the schema does not: {found}"
    else:
        assert found, f"{where}: fusionrec validate rejects it ({reason}), the schema accepts it"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("fusionrec: 1\nfuser: {type: atention}\n", "unknown type"),
        ("fusionrec: 1\nfuser: atention\n", "unknown shorthand"),
        ("fusionrec: 1\nfuser: {type: attention, dims: 64}\n", "unknown parameter"),
        ("fusionrec: 1\nfuser: {type: attention, dim: 0}\n", "constraint"),
        ("fusionrec: 1\nfuser: {dim: 64}\n", "missing type"),
        ("fusionrec: 1\nfusser: {type: attention}\n", "unknown section"),
        ("fuser: attention\n", "missing version"),
        ("fusionrec: 2\n", "wrong version"),
        ("fusionrec: 1\ntrain: {epochs: 5, optimiser: adamw}\n", "unknown setting"),
        ("fusionrec: 1\nencoders: {Image: {type: attention}}\n", "bad modality name"),
    ],
)
def test_invalid_files_fail(validator: jsonschema.Draft202012Validator, text: str, what: str) -> None:
    assert errors(validator, text), f"{what}: accepted"
    with pytest.raises(ConfigError):
        parse_pipeline(text, registry=get_registry())


def test_nested_components_shorthand_nulls_and_metrics(tiny_validator: jsonschema.Draft202012Validator) -> None:
    good = [
        "fusionrec: 1\ndata: {type: tiny.data, path: x, split: {type: tiny.split, valid: 0.2}}\n",
        "fusionrec: 1\ndata: {type: tiny.data, path: x, split: tiny.split}\n",
        "fusionrec: 1\nfuser:\nuser: null\n",
        "fusionrec: 1\nevaluate: {metrics: [tiny.hits@10, tiny.hits@1]}\n",
        "fusionrec: 1\nevaluate: {metrics: [recall@10, coverage@20]}\n",  # built-in metrics
    ]
    for text in good:
        assert errors(tiny_validator, text) == [], text
    bad = [
        "fusionrec: 1\ndata: {type: tiny.data, path: x, split: {type: tiny.split, bogus: 1}}\n",
        "fusionrec: 1\ndata: {type: tiny.data, path: x, split: {type: nope}}\n",
        "fusionrec: 1\ndata: tiny.data\n",  # required path: no shorthand
        "fusionrec: 1\nevaluate: {metrics: [tiny.hits]}\n",
        "fusionrec: 1\nevaluate: {metrics: [recal@10]}\n",  # not a registered metric
        "fusionrec: 1\nevaluate: {metrics: [tiny.hits@0]}\n",
    ]
    for text in bad:
        assert errors(tiny_validator, text), text


def test_the_command_writes_the_schema(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pipeline.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == pipeline_schema(get_registry())
    capsys.readouterr()
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["$schema"] == DIALECT


def test_the_editor_set_up_in_the_docs_is_valid_json() -> None:
    doc = REPO / "docs" / "configuration.md"
    settings = [b for b in blocks(doc) if b.lang in ("json", "jsonc")]
    assert settings, "docs/configuration.md shows no VS Code settings"
    assert "yaml.schemas" in json.loads(settings[0].text)
    assert "# yaml-language-server: $schema=" in doc.read_text(encoding="utf-8")
