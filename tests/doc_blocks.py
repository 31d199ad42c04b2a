"""Fenced code blocks of a Markdown file, with the HTML-comment annotations written just above them.

An annotation is a line ``<!-- word -->`` or ``<!-- word: value -->`` directly before the fence (blank lines
between are allowed). The tutorial test uses ``not-run``, ``file: PATH`` and ``excerpt: PATH``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```|~~~)(?P<lang>[\w+-]*)\s*$")
ANNOTATION = re.compile(r"^\s*<!--\s*(?P<key>[a-z][a-z-]*)(?:\s*:\s*(?P<value>.*?))?\s*-->\s*$")


@dataclass
class Block:
    """One fenced code block.

    Attributes:
        lang: the info string (``python``, ``console``, ``yaml``; empty when none).
        text: the content, dedented by the fence's indentation.
        line: 1-based line of the opening fence.
        notes: annotations above it, ``{"file": "fusionrec-acme/pyproject.toml", "not-run": ""}``.
    """

    lang: str
    text: str
    line: int
    notes: dict[str, str] = field(default_factory=dict)


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        notes: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (not lines[j].strip() or ANNOTATION.match(lines[j])):
            note = ANNOTATION.match(lines[j])
            if note:
                notes[note["key"]] = note["value"] or ""
            j -= 1
        body: list[str] = []
        k = i + 1
        while k < len(lines) and lines[k].strip() != fence:
            body.append(lines[k][indent:] if lines[k][:indent].strip() == "" else lines[k])
            k += 1
        found.append(Block(match["lang"], "\n".join(body) + "\n", i + 1, notes))
        i = k + 1
    return found


def pipeline_blocks(paths: list[Path]) -> list[tuple[str, Block]]:
    """The YAML blocks that are whole pipeline files (they have a top-level ``fusionrec:`` key)."""
    return [
        (f"{p.name}:{b.line}", b)
        for p in paths
        for b in blocks(p)
        if b.lang == "yaml" and re.search(r"^fusionrec:", b.text, re.MULTILINE)
    ]
