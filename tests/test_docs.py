"""The documentation stays true to the code.

Every hook has its own section in docs/plugins/hooks.md (and no section names a hook that does not exist), every
hookspec documents its arguments, the README names the two commands, relative links resolve, and every
``fusionrec ...`` command line shown in the docs names commands and options the CLI really has.
"""

from __future__ import annotations

import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from fusionrec.core.cli import cli
from fusionrec.registry import KINDS, Kind, hookspecs

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HOOKS_DOC = REPO / "docs" / "plugins" / "hooks.md"
DOC_FILES = sorted([README, *(REPO / "docs").rglob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
# `fusionrec ARGS`, optionally after a `$ ` prompt, environment assignments and a path (.venv/bin/fusionrec).
COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\S*/)?fusionrec(?:\s+(?P<args>.*))?$")
SHELL_END = re.compile(r"\s(?:#|\||&&|;|>|2>)")


def hookspec_names() -> list[str]:
    """The hooks declared in fusionrec.registry.hookspecs (functions carrying pluggy's spec marker)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in vars(hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, marker))


def lines_with_code_flag(text: str) -> list[tuple[str, bool]]:
    """Each line of a markdown text, with whether it sits inside a fenced code block (fence lines dropped)."""
    out: list[tuple[str, bool]] = []
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = match.group(1) if fence is None else None
            continue
        out.append((line, fence is not None))
    return out


def split_code(text: str) -> tuple[list[str], list[str]]:
    """The lines of a markdown text outside fenced code blocks, and those inside them."""
    flagged = lines_with_code_flag(text)
    return [line for line, code in flagged if not code], [line for line, code in flagged if code]


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks."""
    prose, _ = split_code(path.read_text(encoding="utf-8"))
    return [(len(m.group(1)), m.group(2)) for line in prose if (m := HEADING.match(line))]


def slugs(path: Path) -> set[str]:
    """The anchors GitHub makes for a file's headings."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, text in headings(path):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def section(path: Path, title: str) -> str:
    """The text under the level-2 heading ``title``, up to the next heading of level 1 or 2."""
    lines: list[str] = []
    inside = False
    for line, code in lines_with_code_flag(path.read_text(encoding="utf-8")):
        match = None if code else HEADING.match(line)
        if match and len(match.group(1)) <= 2:
            inside = match.group(2).strip("`") == title
            continue
        if inside:
            lines.append(line)
    return "\n".join(lines)


def hook_headings() -> list[str]:
    """Level-2 headings of hooks.md that are one lower-case identifier, as hook names are: each must be a hook.

    Prose headings ("Summary", "The register callback") start with a capital letter and are not hooks.
    """
    return [
        text.strip("`")
        for level, text in headings(HOOKS_DOC)
        if level == 2 and re.fullmatch(r"`?[a-z_][a-z0-9_]*`?", text)
    ]


def test_the_hookspec_module_declares_hooks() -> None:
    assert len(hookspec_names()) >= 8
    assert {kind.hook for kind in KINDS} <= set(hookspec_names())


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hook_has_a_section_in_hooks_md(hook: str) -> None:
    assert hook in hook_headings(), f"docs/plugins/hooks.md has no `## {hook}` heading"


def test_every_hook_heading_names_a_real_hook() -> None:
    unknown = sorted(set(hook_headings()) - set(hookspec_names()))
    assert not unknown, f"docs/plugins/hooks.md has sections for hooks that do not exist: {unknown}"
    assert len(hook_headings()) == len(set(hook_headings())), "a hook has two sections in docs/plugins/hooks.md"


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.hook)
def test_hook_sections_name_the_interface_and_context(kind: Kind) -> None:
    text = section(HOOKS_DOC, kind.hook)
    assert kind.interface in text, f"## {kind.hook} does not name its interface {kind.interface}"
    for arg in kind.context:
        assert f"{arg}=" in text, f"## {kind.hook} does not show how the factory receives {arg}"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hookspec_documents_its_arguments(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Args:" in doc, f"the docstring of hookspec {hook} has no Args: section"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("quickstart", "test"):
        assert f"make {target}" in text, f"README.md does not mention `make {target}`"
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"the Makefile has no {target} target"


def links(path: Path) -> list[str]:
    prose, _ = split_code(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for line in prose:
        found += REFERENCE_LINK.findall(line)
        found += LINK.findall(INLINE_CODE.sub("", line))
    return found


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists() or REPO not in (dest, *dest.parents):
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in slugs(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(REPO)})")
    assert not broken, f"{doc.relative_to(REPO)}: broken links: {broken}"


def command_lines(path: Path) -> list[str]:
    """The arguments of every `fusionrec ...` command line in code blocks and inline code."""
    prose, code = split_code(path.read_text(encoding="utf-8"))
    candidates = code + [span.strip("`") for line in prose for span in INLINE_CODE.findall(line)]
    found = []
    for text in candidates:
        match = COMMAND.match(text)
        if match:
            args = match.group("args") or ""
            end = SHELL_END.search(" " + args)
            found.append((" " + args)[: end.start()].strip() if end else args.strip())
    return found


def check_command_line(args: str) -> list[str]:
    """What is wrong with `fusionrec ARGS`: unknown subcommands and options."""
    try:
        tokens = shlex.split(args)
    except ValueError:
        tokens = args.split()
    problems = []
    command: click.Command = cli
    path = "fusionrec"
    arguments_started = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            options = {
                opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts
            }
            if name in ("-h", "--help"):
                continue
            if name not in options:
                problems.append(f"`{path}` has no option {name}")
            elif "=" not in token and not options[name].is_flag and not options[name].count:
                i += 1  # the option's value
        elif isinstance(command, click.Group) and not arguments_started:
            if token not in command.commands:
                problems.append(f"`{path}` has no subcommand {token!r}")
                break
            command = command.commands[token]
            path += f" {token}"
        else:
            arguments_started = True
    return problems


def test_the_docs_show_command_lines() -> None:
    assert any(command_lines(doc) for doc in DOC_FILES), "no `fusionrec ...` command found: is the pattern broken?"
    assert check_command_line("validate --resolved FILE") == []
    assert check_command_line("plugins info attention") == []
    assert check_command_line("valdate FILE") == ["`fusionrec` has no subcommand 'valdate'"]
    assert check_command_line("plugins --verbose") == ["`fusionrec plugins` has no option --verbose"]


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_commands_exist(doc: Path) -> None:
    problems = [f"fusionrec {args}: {p}" for args in command_lines(doc) for p in check_command_line(args)]
    assert not problems, f"{doc.relative_to(REPO)} shows commands the CLI does not have: {problems}"


def test_architecture_names_every_folder() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    folders = [p.parent for p in (REPO / "core").glob("*/__init__.py")] + [
        p for p in (REPO / "plugins").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    ]
    missing = [
        str(f.relative_to(REPO)) for f in folders if f"{f.relative_to(REPO)}/" not in text and f"{f.name}/" not in text
    ]
    assert missing == []


def test_the_python_api_example_runs(tmp_path: Path) -> None:
    text = (REPO / "docs" / "python-api.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "test recall@20 (served):" in result.stdout and "'report'" in result.stdout
