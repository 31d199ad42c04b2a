"""Pipeline files: validation, the messages users see, line numbers, safety, round-trips."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from plugin_sources import TinyPlugin

from fusionrec.core.assembly.config import (
    PipelineSpec,
    TrainConfig,
    dump_pipeline,
    dumps_pipeline,
    load_pipeline,
    parse_metric,
    parse_pipeline,
)
from fusionrec.core.errors import ConfigError, UnknownComponentError
from fusionrec.registry import Registry
from fusionrec.registry.testing import make_registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return make_registry(("tiny", TinyPlugin()))


def parse(text: str, registry: Registry, file: str = "pipeline.yaml") -> PipelineSpec:
    return parse_pipeline(textwrap.dedent(text), file=file, registry=registry)


def error_of(text: str, registry: Registry) -> ConfigError:
    with pytest.raises(ConfigError) as excinfo:
        parse(text, registry)
    return excinfo.value


FULL = """\
fusionrec: 1
data:
  type: tiny.data
  path: data/movies
  split: {type: tiny.split, valid: 0.2}
fuser: {type: attention, dim: 32}
train: {epochs: 2, seed: 7}
evaluate: {metrics: [tiny.hits@10, tiny.hits@20]}
"""


def test_a_valid_pipeline_becomes_a_spec(registry: Registry, tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(FULL)
    spec = load_pipeline(file, registry)
    assert spec.fuser is not None and spec.fuser.type == "attention"
    assert spec.fuser.params.dim == 32  # type: ignore[attr-defined]
    assert spec.train == TrainConfig(epochs=2, seed=7)
    assert spec.data is not None
    split = spec.data.params.split  # type: ignore[attr-defined]
    assert (split.type, split.params.valid) == ("tiny.split", 0.2)
    assert spec.evaluate is not None and spec.evaluate.metrics == ("tiny.hits@10", "tiny.hits@20")
    assert [where for where, _ in spec.components()] == ["data", "fuser"]


def test_relative_paths_resolve_against_the_pipeline_file(registry: Registry, tmp_path: Path) -> None:
    file = tmp_path / "conf" / "p.yaml"
    file.parent.mkdir()
    file.write_text(FULL)
    spec = load_pipeline(file, registry)
    assert spec.data is not None
    assert spec.data.params.path == tmp_path / "conf" / "data" / "movies"  # type: ignore[attr-defined]


def test_spec_round_trips_through_yaml(registry: Registry, tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(FULL)
    spec = load_pipeline(file, registry)
    text = dumps_pipeline(spec)
    again = parse_pipeline(text, file=tmp_path / "elsewhere" / "dumped.yaml", registry=registry)
    assert again == spec
    assert dump_pipeline(again) == dump_pipeline(spec)
    assert "dim: 32" in text and "temperature: null" in text  # defaults are written out


def test_nested_components_are_built_recursively(registry: Registry, tmp_path: Path) -> None:
    spec = parse(FULL, registry, file=str(tmp_path / "p.yaml"))
    assert spec.data is not None
    built = registry.build(spec.data)
    assert built["split"] == ("split", 0.2)


def test_nested_component_defaults_are_validated_specs(registry: Registry, tmp_path: Path) -> None:
    spec = parse("fusionrec: 1\ndata: {type: tiny.data, path: d}\n", registry, file=str(tmp_path / "p.yaml"))
    assert spec.data is not None
    split = spec.data.params.split  # type: ignore[attr-defined]
    assert (split.kind, split.type, split.params.valid) == ("split", "tiny.split", 0.1)
    assert registry.build(spec.data)["split"] == ("split", 0.1)
    assert "split:\n    type: tiny.split\n    valid: 0.1\n" in dumps_pipeline(spec)


def test_bare_name_is_short_for_a_type_block(registry: Registry) -> None:
    spec = parse("fusionrec: 1\nfuser: concat\n", registry)
    assert spec.fuser is not None and spec.fuser.type == "concat"


def test_unknown_fuser_names_file_path_line_and_suggestion(registry: Registry) -> None:
    error = error_of("fusionrec: 1\n\nfuser:\n  type: atention\n  dim: 64\n", registry)
    assert isinstance(error, UnknownComponentError)
    assert str(error) == (
        "pipeline.yaml:4: fuser.type: unknown fuser 'atention'. Did you mean 'attention'? "
        "Available: attention, concat, cross_attention, gated, low_rank, mean."
    )
    assert (error.file, error.path, error.line) == ("pipeline.yaml", ("fuser", "type"), 4)


def test_unknown_parameter_is_reported_with_suggestion_and_line(registry: Registry) -> None:
    error = error_of("fusionrec: 1\nfuser:\n  type: attention\n  dimm: 64\n", registry)
    assert not isinstance(error, UnknownComponentError)
    assert str(error) == (
        "pipeline.yaml:4: fuser.dimm: unknown parameter 'dimm' for fuser 'attention'. Did you mean 'dim'? "
        "Parameters: dim, dropout, temperature, normalize, modality_dropout."
    )


def test_all_problems_of_a_file_come_in_one_message(registry: Registry) -> None:
    error = error_of(
        """\
        fusionrec: 1
        fuser:
          type: attention
          dim: -3
          dropuot: 0.1
        train:
          lr: fast
        """,
        registry,
    )
    lines = str(error).splitlines()
    assert lines[0] == "pipeline.yaml: 3 problems:"
    assert lines[1] == "  pipeline.yaml:4: fuser.dim: Input should be greater than 0; got -3."
    assert lines[2].startswith("  pipeline.yaml:5: fuser.dropuot: unknown parameter 'dropuot'")
    assert "Did you mean 'dropout'?" in lines[2]
    assert lines[3].startswith("  pipeline.yaml:7: train.lr: Input should be a valid number")
    assert len(error.problems) == 3


def test_nested_component_errors_carry_their_full_path(registry: Registry) -> None:
    error = error_of(
        """\
        fusionrec: 1
        data:
          type: tiny.data
          path: x
          split:
            type: tiny.splt
        """,
        registry,
    )
    assert str(error).startswith(
        "pipeline.yaml:6: data.split.type: unknown split 'tiny.splt'. Did you mean 'tiny.split'?"
    )


def test_missing_required_parameter_is_described(registry: Registry) -> None:
    error = error_of("fusionrec: 1\ndata: {type: tiny.data}\n", registry)
    assert str(error) == (
        "pipeline.yaml:2: data.path: missing required parameter 'path' of dataset 'tiny.data' (Folder with the data.)."
    )


def test_missing_type_lists_choices(registry: Registry) -> None:
    error = error_of("fusionrec: 1\nfuser:\n  dim: 3\n", registry)
    assert "pipeline.yaml:2: fuser: missing 'type': say which fuser to use" in str(error)
    assert "Available: attention, concat, cross_attention, gated, low_rank, mean." in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fuser: concat\n", "pipeline.yaml: <top level>: missing the schema version: add `fusionrec: 1`"),
        ("fusionrec: 2\n", "pipeline.yaml:1: fusionrec: unsupported schema version 2: this fusionrec reads version 1."),
        ("fusionrec: 1.0\n", "pipeline.yaml:1: fusionrec: unsupported schema version 1.0"),
        ("fusionrec: 1\nfusr: concat\n", "pipeline.yaml:2: fusr: unknown section 'fusr'. Did you mean 'fuser'?"),
        ("", "pipeline.yaml: <top level>: the file is empty"),
        ("- a\n- b\n", "a pipeline file is a mapping of sections"),
        ("fusionrec: 1\nencoders: [a]\n", "pipeline.yaml:2: encoders: expected a mapping of modality name"),
        ("fusionrec: 1\nencoders: {Image: x}\n", "encoders.Image: modality names are lower-case identifiers"),
        ("fusionrec: 1\nencoders: {image: x}\n", "encoders.image.type: unknown encoder 'x'. Available: "),
        ("fusionrec: 1\nfuser: [1]\n", "fuser: expected a {type: ...} mapping naming a fuser, got a list."),
        ("fusionrec: 1\ntrain: 3\n", "pipeline.yaml:2: train: expected a mapping of section 'train' settings, got 3."),
        ("fusionrec: 1\nevaluate: {metrics: [recall]}\n", "evaluate.metrics[0]: metrics are written name@K"),
        ("fusionrec: 1\nevaluate: {metrics: [tiny.hitz@5]}\n", "Did you mean 'tiny.hits'?"),
        (
            "fusionrec: 1\ntrain: {loss: hinge}\n",
            "train.loss: Input should be 'sampled_softmax', 'softmax' or 'bpr'; got 'hinge'.",
        ),
    ],
)
def test_structural_errors(registry: Registry, text: str, expected: str) -> None:
    assert expected in str(error_of(text, registry))


def test_duplicate_keys_are_errors_not_silently_overwritten(registry: Registry) -> None:
    error = error_of("fusionrec: 1\nfuser: {type: concat}\ntrain: {}\nfuser: {type: attention}\n", registry)
    assert str(error) == ("pipeline.yaml:4: fuser: duplicate key (first at line 2); YAML would keep only the last.")


def test_invalid_yaml_reports_the_line(registry: Registry) -> None:
    error = error_of("fusionrec: 1\nfuser:\n  type: [attention\n  dim: 3\n", registry)
    assert error.line is not None and error.line >= 3
    assert "invalid YAML" in str(error)


def test_yaml_tags_cannot_run_code(registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f'fusionrec: 1\nfuser: !!python/object/apply:os.system ["touch {marker}"]\n'
    error = error_of(text, registry)
    assert "invalid YAML" in str(error) and "python/object/apply" in str(error)
    assert not marker.exists()


def test_missing_file_is_a_config_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: <top level>: cannot read the pipeline file: No such file"):
        load_pipeline(tmp_path / "nope.yaml", registry)


def test_parse_metric() -> None:
    assert parse_metric("recall@20") == ("recall", 20)
    assert parse_metric("clip.recall@1") == ("clip.recall", 1)
    assert parse_metric("recall@0") is None
    assert parse_metric("recall") is None


def test_quickstart_pipeline_is_valid() -> None:
    spec = load_pipeline(Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml")
    assert spec.fuser is not None


def test_feature_workers_default_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from fusionrec.core.assembly.config import FeaturesConfig

    assert FeaturesConfig(num_workers=3).workers() == 3
    for cpus, expected in ((1, 0), (2, 0), (4, 2), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        assert FeaturesConfig().workers() == expected
