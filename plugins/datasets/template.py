"""Item text templates: ``"{title}[. Genres: {genres}][. Tags: {tags}]"``.

A template is Python format syntax restricted to plain field names (``{title}``; ``{{`` and ``}}`` are literal
braces), plus optional parts in square brackets: ``[. Tags: {tags}]`` is left out for an item whose fields in it
are all empty, so no item ends with a dangling ``Tags:``. ``[[`` and ``]]`` are literal brackets.

Parsing is pure Python (parameter models validate templates without pandas); :func:`render` fills a template for
every item at once, column by column, without a loop over items.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Segment:
    """A run of the template: literal text and field names in order; ``optional`` when it was in brackets."""

    parts: tuple[tuple[str, str | None], ...]  # (literal text, field name or None)
    optional: bool

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)


def parse(template: str) -> tuple[Segment, ...]:
    """Split a template into segments.

    Raises:
        ValueError: unbalanced brackets or braces, a bracket part without a field, or a field that is not a plain
            name (``{title!r}``, ``{title:>10}``, ``{tags[0]}``).
    """
    chunks: list[tuple[str, bool]] = []
    buf: list[str] = []
    optional = False
    i = 0
    while i < len(template):
        char = template[i]
        if char in "[]" and template[i + 1 : i + 2] == char:
            buf.append(char)
            i += 2
            continue
        if char == "[":
            if optional:
                raise ValueError(f"optional parts cannot be nested (second '[' at character {i + 1})")
            chunks.append(("".join(buf), False))
            buf, optional = [], True
        elif char == "]":
            if not optional:
                raise ValueError(f"']' at character {i + 1} closes no '[' (write ']]' for a literal bracket)")
            chunks.append(("".join(buf), True))
            buf, optional = [], False
        else:
            buf.append(char)
        i += 1
    if optional:
        raise ValueError("an optional part opened with '[' is not closed with ']'")
    chunks.append(("".join(buf), False))

    segments = []
    for text, is_optional in chunks:
        if not text:
            continue
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} (write '{{{{' or '}}}}' for a literal brace)") from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (spec or conversion or not name.isidentifier()):
                shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise ValueError(f"{shown}: fields are plain names such as {{title}}, without formats or indexes")
            parts.append((literal, name))
        segment = Segment(tuple(parts), is_optional)
        if is_optional and not segment.fields:
            raise ValueError(f"the optional part [{text}] has no field; brackets only make sense around a field")
        segments.append(segment)
    return tuple(segments)


def fields(template: str) -> tuple[str, ...]:
    """The field names a template uses, in order of first use."""
    seen: dict[str, None] = {}
    for segment in parse(template):
        for name in segment.fields:
            seen.setdefault(name)
    return tuple(seen)


def check(template: str, allowed: tuple[str, ...]) -> str:
    """Validate ``template`` against the fields ``allowed``; returns it unchanged.

    Raises:
        ValueError: the template is malformed or names a field not in ``allowed``.
    """
    unknown = [name for name in fields(template) if name not in allowed]
    if unknown:
        raise ValueError(
            f"the text template uses {', '.join('{' + n + '}' for n in unknown)}, which is not available; "
            f"fields: {', '.join('{' + n + '}' for n in allowed) or 'none'}"
        )
    return template


def render(template: str, columns: dict[str, pd.Series]) -> pd.Series:
    """Fill ``template`` for every row: ``columns`` maps each field to a string Series (``""`` when empty).

    The result is stripped of surrounding white space.
    """
    import pandas as pd

    index = next(iter(columns.values())).index if columns else pd.RangeIndex(0)
    out = pd.Series("", index=index, dtype=object)
    for segment in parse(template):
        piece = pd.Series("", index=index, dtype=object)
        for literal, name in segment.parts:
            if literal:
                piece = piece + literal
            if name is not None:
                piece = piece + columns[name]
        if segment.optional:
            empty = pd.Series(True, index=index)
            for name in segment.fields:
                empty &= columns[name] == ""
            piece = piece.mask(empty, "")
        out = out + piece
    return out.str.strip()
