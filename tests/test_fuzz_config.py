"""Property-based fuzzing of pipeline files (issue 18): whatever a user writes, `fusionrec validate` answers with a
valid pipeline or a ConfigError naming the file and a key path, never another exception (a traceback, exit 1).

Each example starts from one of the shipped pipelines (examples/*.yaml), mutates it one to four times (a key
dropped, renamed or retyped, a value nested wrongly, huge numbers, unicode, empty values, lists where mappings go,
a mapping where a list goes, the YAML text cut short), writes it into a file and runs it through the function the
CLI's `validate` calls (:func:`fusionrec.core.assembly.config.load_pipeline`), in-process. A pipeline that
validates then goes through the cheap part of assembly: the stage plan `fusionrec run` prints, a dump → parse
round trip, and building the dataset (which reads nothing until it is loaded).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionrec.core.assembly.config import dumps_pipeline, load_pipeline, parse_pipeline
from fusionrec.core.engine.stages import plan
from fusionrec.core.errors import ConfigError, FusionrecError
from fusionrec.registry import Registry, get_registry

REPO = Path(__file__).resolve().parents[1]
QUICKSTART_DATA = REPO / "examples" / "data" / "quickstart"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
EXAMPLES_RUN = 500


def _base(path: Path) -> dict[str, Any]:
    """A shipped pipeline, its data pointed at the bundled quickstart folder (so that validity is possible)."""
    doc = yaml.safe_load(path.read_text())
    doc["data"]["path"] = str(QUICKSTART_DATA)
    return doc  # type: ignore[no-any-return]


BASES = [_base(path) for path in EXAMPLES]


def _walk(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``value`` (mappings and lists), the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_walk(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(_walk(child, (*prefix, index)))
    return out


KNOWN_KEYS = sorted({str(path[-1]) for doc in BASES for path in _walk(doc) if path and isinstance(path[-1], str)})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**100, -(10**100)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "0", "null", "1e309", "-inf", "nan", "HNSW32", "attention", "recall@10", "~"]),
    st.text(max_size=12),
    st.text(alphabet="éü中文🙂\u200b\u202e\x00\t", max_size=6),
    st.sampled_from(KNOWN_KEYS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=6)), inner, max_size=3),
    ),
    max_leaves=6,
)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """One mutation of ``doc`` (changed in place where possible; returns the new document)."""
    paths = _walk(doc)
    path = data.draw(st.sampled_from(paths), label="path")
    op = data.draw(
        st.sampled_from(["drop", "rename", "retype", "wrap_list", "wrap_map", "empty", "to_list", "huge", "add"]),
        label="op",
    )
    if not path:  # the root
        if op in ("wrap_list", "to_list"):
            return [doc]
        if op == "retype":
            return data.draw(scalars)
        if op == "empty":
            return None
        path = (data.draw(st.sampled_from(sorted(doc)) if isinstance(doc, dict) and doc else st.just("data")),)
        if not isinstance(doc, dict) or path[0] not in doc:
            return doc
    parent, key = _get(doc, path[:-1]), path[-1]
    value = parent[key]
    if op == "drop":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        new = data.draw(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=10)), label="new key")
        parent[new] = parent.pop(key)
    elif op == "retype":
        parent[key] = data.draw(values, label="value")
    elif op == "wrap_list":
        parent[key] = [value]
    elif op == "wrap_map":
        parent[key] = {data.draw(st.sampled_from(KNOWN_KEYS), label="wrapper"): value}
    elif op == "empty":
        parent[key] = data.draw(st.sampled_from([None, "", [], {}]), label="empty")
    elif op == "to_list" and isinstance(value, dict):
        parent[key] = list(value.items())
    elif op == "huge":
        parent[key] = data.draw(st.sampled_from([10**30, -(10**30), 1e308, float("inf"), 2**64]), label="huge")
    elif op == "add" and isinstance(value, dict):
        value[data.draw(st.sampled_from(KNOWN_KEYS), label="added")] = data.draw(values, label="added value")
    return doc


ODD_PATHS = ["a" * 5000, "~nosuchuser_fuzz/data", "a\x00b", "/", "", " ", ".", "~", "data/quickstart/ratings.csv"]

TEXT_EDITS = [
    lambda text, cut: text[:cut],  # cut short mid-token
    lambda text, cut: text + "---\nfusionrec: 1\n",  # a second document
    lambda text, cut: "\ufeff" + text,  # a byte-order mark
    lambda text, cut: text + "loop: &x [*x]\n",  # an alias inside its own value
    lambda text, cut: text + "deep: " + "[" * 400 + "]" * 400 + "\n",
    lambda text, cut: (
        text + "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    ),  # aliases multiplied
    lambda text, cut: text[:cut] + "\t" + text[cut:],
    lambda text, cut: text.replace(": ", ": !!binary ", 1),
    lambda text, cut: text + "? [a, b]\n: 1\n",  # a key that is a list
    lambda text, cut: text + "1: 2\n~: 3\n",  # keys that are not strings
]


def _text(doc: Any, data: st.DataObject) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and data.draw(st.integers(0, 9), label="path?") == 0:
        doc["data"]["path"] = data.draw(st.sampled_from(ODD_PATHS), label="odd path")
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    if data.draw(st.integers(0, 4), label="edit text?") == 0:  # one file in five gets a text-level edit
        edit = data.draw(st.sampled_from(TEXT_EDITS), label="text edit")
        text = edit(text, data.draw(st.integers(0, len(text)), label="where"))
    return text


def _check_error(error: FusionrecError, file: Path) -> None:
    """A user-facing error: it names the file, and each problem a key path."""
    message = str(error)
    assert message.strip(), "an empty error message"
    if isinstance(error, ConfigError):
        assert error.file == str(file), message
        for problem in error.problems:
            assert problem.message.strip() and problem.render(error.file).startswith(str(file)), message
    else:
        assert str(file) in message or "data" in message, message


def _assemble(file: Path, registry: Registry) -> None:
    spec = load_pipeline(file, registry)
    stages = plan(spec, registry)
    assert stages and stages[-1].name == "report"
    again = parse_pipeline(dumps_pipeline(spec), file=file, registry=registry)
    assert again == spec, "dump → parse changed the pipeline"
    if spec.data is not None:
        dataset = registry.build(spec.data)
        assert hasattr(dataset, "load") and hasattr(dataset, "split")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return get_registry()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


OUTCOMES: dict[str, int] = {"valid": 0, "ConfigError": 0, "other FusionrecError": 0}


@settings(
    max_examples=EXAMPLES_RUN,
    deadline=None,
    derandomize=True,  # the same 500 files on every run: a failure reproduces, CI time is steady
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_pipelines_are_valid_or_a_config_error_with_a_key_path(
    registry: Registry, workdir: Path, data: st.DataObject
) -> None:
    doc = yaml.safe_load(yaml.safe_dump(data.draw(st.sampled_from(BASES), label="base")))  # a deep copy
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        doc = _mutate(doc, data)
    file = workdir / "pipeline.yaml"
    file.write_text(_text(doc, data), encoding="utf-8")
    try:
        _assemble(file, registry)
        OUTCOMES["valid"] += 1
    except ConfigError as error:
        _check_error(error, file)
        OUTCOMES["ConfigError"] += 1
    except FusionrecError as error:
        _check_error(error, file)
        OUTCOMES["other FusionrecError"] += 1


def test_the_fuzzing_reaches_both_outcomes_quickly(registry: Registry, workdir: Path) -> None:
    """Runs after the fuzz test (file order): both valid files and errors were seen, and every shipped base
    pipeline validates once pointed at the bundled data."""
    for doc in BASES:
        file = workdir / "base.yaml"
        file.write_text(yaml.safe_dump(doc, sort_keys=False))
        _assemble(file, registry)
    if sum(OUTCOMES.values()) >= EXAMPLES_RUN:
        assert OUTCOMES["valid"] > 0 and OUTCOMES["ConfigError"] > EXAMPLES_RUN // 2, OUTCOMES


QUICKSTART = f"fusionrec: 1\ndata: {{type: movielens, path: {QUICKSTART_DATA}"

# what the fuzzing found crashing (or passing where it should not), each now a ConfigError at a key path
FOUND = [
    ("fusionrec: 1\na: &x [*x]\n", ("a", 0), "alias refers to the value that contains it"),  # RecursionError
    ("fusionrec: 1\nfuser: " + "[" * 500 + "]" * 500 + "\n", (), "nested too deeply"),  # RecursionError in PyYAML
    (
        "fusionrec: 1\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        ("e",),
        "more than 100,000 values",  # a million-value walk before: a file built to blow up
    ),
    (f"{QUICKSTART}/{'a' * 5000}}}\n", ("data", "path"), "cannot be checked: File name too long"),  # OSError
    ("fusionrec: 1\ndata: {type: movielens, path: '~nosuchuser_fuzz/x'}\n", ("data", "path"), "cannot expand"),
    (f"{QUICKSTART}, min_rating: .nan}}\n", ("data", "min_rating"), "finite number"),  # every rating kept
    ("fusionrec: 1\ntrain: {seed: 100000000000000000000000000}\n", ("train", "seed"), "less than or equal"),
]


@pytest.mark.parametrize(("text", "path", "says"), FOUND, ids=[f"found{i}" for i in range(len(FOUND))])
def test_what_the_fuzzing_found_is_a_config_error(
    registry: Registry, workdir: Path, text: str, path: tuple[Any, ...], says: str
) -> None:
    file = workdir / "found.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_pipeline(file, registry)
    assert error.value.path == path and says in str(error.value), str(error.value)


def test_a_features_section_without_encoders_round_trips(registry: Registry) -> None:
    """Found by the fuzzing: the dump left out a `features` section when there were no encoders."""
    spec = parse_pipeline("fusionrec: 1\nfeatures: {num_workers: 3}\n", registry=registry)
    assert parse_pipeline(dumps_pipeline(spec), registry=registry) == spec
    plain = parse_pipeline("fusionrec: 1\n", registry=registry)
    assert "features" not in dumps_pipeline(plain)  # the default stays out, as before


def test_nan_in_a_number_is_a_config_error(registry: Registry, workdir: Path) -> None:
    file = workdir / "nan.yaml"
    doc = yaml.safe_load(yaml.safe_dump(BASES[0]))
    doc["train"]["lr"] = math.nan
    file.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as error:
        load_pipeline(file, registry)
    assert error.value.path == ("train", "lr")
