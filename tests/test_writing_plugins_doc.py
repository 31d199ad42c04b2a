"""docs/plugins/writing-plugins.md, executed: every code block runs, in order, in one temporary folder.

Conventions (the tutorial states them too):

- ``console`` blocks: each ``$ COMMAND`` runs, and the lines shown under it must appear in its output (loosely:
  each shown line's words appear, in order, in one output line; box-drawing characters are ignored and a word
  containing ``…`` stands for anything). A shown line starting with ``error:`` means the command must fail with
  status 2; otherwise it must succeed. Commands: ``fusionrec …`` (with optional ``VAR=value`` prefixes),
  ``pip install …`` (run as a non-editable ``--target`` install into an isolated folder, never into the shared
  environment) and ``python -m pytest …``.
- ``<!-- file: PATH -->`` before a block: if the file exists (the scaffold wrote it), the block must equal it;
  otherwise the block is written there. ``<!-- excerpt: PATH -->``: the block's lines appear in that file, in order.
- ``python`` blocks without a file note run as scripts; those defining ``test_`` functions run under pytest.
- ``yaml`` blocks are pipelines: validated by fusionrec (with the plugins installed so far) and by the JSON Schema
  (``fusionrec schema``, or the file a ``# yaml-language-server: $schema=`` line names); ``<!-- invalid -->``
  blocks must fail both. ``toml`` and ``json`` blocks must parse.
- ``<!-- not-run -->`` skips a block (kept rare: the network is needed); ``text`` blocks are output, not code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from doc_blocks import Block, blocks

from fusionrec.core.assembly.config import parse_pipeline
from fusionrec.core.assembly.schema import pipeline_schema
from fusionrec.core.errors import ConfigError
from fusionrec.registry import build_plugin_manager, build_registry
from fusionrec.registry.scaffold import KIND_TEMPLATES

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "plugins" / "writing-plugins.md"
BOX = re.compile(r"[\u2500-\u257f]")
MAX_NOT_RUN = 2

pytestmark = pytest.mark.slow


def words(line: str) -> list[str]:
    return [w for w in BOX.sub(" ", line).split() if "…" not in w]


def shown_in(expected: str, output: str) -> bool:
    """Whether the words of ``expected`` appear, in order, within one line of ``output``."""
    want = words(expected)
    for line in output.splitlines():
        have = iter(words(line))
        if all(any(w == h for h in have) for w in want):
            return True
    return False


class Tutorial:
    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.site = root / "site"
        self.work.mkdir()
        self.commands = 0

    def env(self, **extra: str) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONREC_") and k != "PYTHONPATH"}
        return {**clean, "PYTHONPATH": str(self.site), "COLUMNS": "200", "NO_COLOR": "1", **extra}

    def run(self, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, cwd=self.work, env=self.env(**extra), timeout=300, check=False
        )

    def command(self, line: str) -> subprocess.CompletedProcess[str]:
        tokens = shlex.split(line)
        assignments = {}
        while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
            key, _, value = tokens.pop(0).partition("=")
            assignments[key] = value
        self.commands += 1
        if tokens[0] == "fusionrec":
            return self.run([sys.executable, "-m", "fusionrec.core.cli", *tokens[1:]], **assignments)
        if tokens[:2] == ["pip", "install"]:
            paths = [t for t in tokens[2:] if not t.startswith("-")]
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--upgrade"]
            return self.run([*pip, "--target", str(self.site), *paths], PIP_DISABLE_PIP_VERSION_CHECK="1")
        if tokens[:3] == ["python", "-m", "pytest"]:
            return self.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *tokens[3:]], **assignments)
        raise AssertionError(f"the tutorial runs fusionrec, pip install and python -m pytest only, not: {line}")

    def console(self, block: Block) -> None:
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip():
                assert steps, f"line {block.line}: output before any `$` command"
                steps[-1][1].append(line)
        for cmd, shown in steps:
            result = self.command(cmd)
            output = result.stdout + result.stderr
            failing = any(line.startswith("error:") for line in shown)
            expected_status = 2 if failing else 0
            assert result.returncode == expected_status, (
                f"line {block.line}: `{cmd}` exited {result.returncode}, expected {expected_status}:\n{output[-3000:]}"
            )
            missing = [line for line in shown if words(line) and not shown_in(line, output)]
            assert not missing, f"line {block.line}: `{cmd}` did not print {missing}; it printed:\n{output[-3000:]}"

    def registry(self):  # type: ignore[no-untyped-def]
        """The registry a fresh `fusionrec` would see: built-ins, the shared environment's plugins, and ours."""
        sys.path.insert(0, str(self.site))
        try:
            return build_registry(build_plugin_manager(disabled=()))
        finally:
            sys.path.remove(str(self.site))

    def pipeline(self, block: Block) -> None:
        registry = self.registry()
        schema = pipeline_schema(registry)
        named = re.search(r"^# yaml-language-server: \$schema=(\S+)", block.text, re.MULTILINE)
        if named:
            schema = json.loads((self.work / named.group(1)).read_text(encoding="utf-8"))
        try:
            parse_pipeline(block.text, file="block.yaml", registry=registry)
            valid = True
        except ConfigError:
            valid = False
        schema_errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(block.text)))
        if "invalid" in block.notes:
            assert not valid and schema_errors, f"line {block.line}: a pipeline marked invalid is valid"
        else:
            assert valid, f"line {block.line}: fusionrec does not validate this pipeline"
            assert not schema_errors, f"line {block.line}: the schema rejects it: {schema_errors[0].message}"

    def python(self, block: Block) -> None:
        script = self.work / f"doc_block_{block.line}.py"
        script.write_text(block.text, encoding="utf-8")
        if re.search(r"^def test_", block.text, re.MULTILINE):
            result = self.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name])
        else:
            result = self.run([sys.executable, script.name])
        assert result.returncode == 0, f"line {block.line}: {result.stdout[-3000:]}{result.stderr[-3000:]}"

    def file(self, block: Block, relative: str) -> None:
        path = self.work / relative
        if path.exists():
            assert block.text == path.read_text(encoding="utf-8"), (
                f"line {block.line}: the block differs from the generated {relative}; paste the file again"
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text, encoding="utf-8")

    def excerpt(self, block: Block, relative: str) -> None:
        lines = iter((self.work / relative).read_text(encoding="utf-8").splitlines())
        for wanted in (line for line in block.text.splitlines() if line.strip()):
            assert any(line == wanted for line in lines), f"line {block.line}: {wanted!r} not in {relative} (in order)"

    def block(self, block: Block) -> None:
        if "file" in block.notes:
            self.file(block, block.notes["file"])
        if "excerpt" in block.notes:
            self.excerpt(block, block.notes["excerpt"])
        if block.lang == "console":
            self.console(block)
        elif block.lang == "yaml":
            self.pipeline(block)
        elif block.lang == "python" and "file" not in block.notes and "excerpt" not in block.notes:
            self.python(block)
        elif block.lang == "toml":
            tomllib.loads(block.text)
        elif block.lang in ("json", "jsonc"):
            json.loads(block.text)
        elif block.lang not in ("python", "text"):
            raise AssertionError(f"line {block.line}: a {block.lang or 'plain'} block; use text for output")


@pytest.fixture
def tutorial(tmp_path: Path) -> Iterator[Tutorial]:
    before = set(sys.modules)
    yield Tutorial(tmp_path)
    for name in set(sys.modules) - before:
        if name.startswith("fusionrec_acme"):
            del sys.modules[name]


def test_every_code_block_of_the_tutorial_runs(tutorial: Tutorial) -> None:
    found = blocks(TUTORIAL)
    skipped = [b for b in found if "not-run" in b.notes]
    assert len(skipped) <= MAX_NOT_RUN, f"too many <!-- not-run --> blocks: lines {[b.line for b in skipped]}"
    for block in found:
        if "not-run" not in block.notes:
            tutorial.block(block)
    assert tutorial.commands >= 8, "the tutorial's console blocks did not run: is the parser broken?"


def test_the_tutorial_lists_every_kind_the_scaffold_writes() -> None:
    text = TUTORIAL.read_text(encoding="utf-8")
    for kind, template in KIND_TEMPLATES.items():
        assert f"| `{kind}` | `acme.{template.component}` |" in text


def test_the_loose_comparison_can_fail() -> None:
    assert shown_in("┃ acme │ fusionrec-acme 0.1.0 │", "│ acme   │ entrypoint │ fusionrec-acme 0.1.0 │")
    assert shown_in("9 passed in …", "9 passed in 3.2s")
    assert not shown_in("9 passed in …", "8 passed in 3.2s")
    assert not shown_in("acme fusionrec-acme", "fusionrec-acme acme")  # order matters
