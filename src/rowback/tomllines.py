"""Find where a key sits in TOML text, best effort, so errors can name a line.

``tomllib`` returns plain dicts without positions, yet a user fixing a typo needs
``rowback.toml:7``. So we scan the text: table headers (``[tables."public.t"]``,
``[[maintenance]]``) open sections and ``key = value`` lines name keys within them.
Multi-line strings or arrays can fool the scan; then the answer is the enclosing
section's header, which is still close.

>>> text = '[defaults]\\naction = "x"\\n\\n[[hooks]]\\n[[hooks]]\\nurl = 1\\n'
>>> find_line(text, ("defaults", "action"))
2
>>> find_line(text, ("hooks", 1, "url"))
6
>>> format_key(("tables", "public.t", "action")), format_key(("hooks", 0, "url"))
('tables."public.t".action', 'hooks[0].url')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KeyPath", "find_line", "format_key", "key_at"]

KeyPath = tuple[str | int, ...]
"""A path into parsed TOML: table keys, and indexes into arrays of tables."""

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LITERAL = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class _Section:
    path: KeyPath
    line: int
    """The header's line; 0 for the root section before any header."""
    end: int
    """The last line that belongs to the section."""


def format_key(path: KeyPath) -> str:
    """The path as a user would write it: bare keys plain, others quoted, ``[i]`` indexes."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out += f".{text}" if out else text
    return out


def _dotted_key(text: str) -> tuple[tuple[str, ...], str] | None:
    """Split a dotted key off the start of ``text``: its parts and the rest of the text."""
    parts: list[str] = []
    rest = text
    while True:
        rest = rest.lstrip()
        match = _BASIC.match(rest) or _LITERAL.match(rest) or _BARE.match(rest)
        if match is None:
            return None
        part = match.group(1) if match.re is not _BARE else match.group(0)
        if match.re is _BASIC:
            part = re.sub(r"\\(.)", r"\1", part)
        parts.append(part)
        rest = rest[match.end() :].lstrip()
        if not rest.startswith("."):
            return tuple(parts), rest
        rest = rest[1:]


def _sections(lines: list[str]) -> list[_Section]:
    """Every section of the text in order, the root first; array headers get an index."""
    found: list[tuple[KeyPath, int]] = [((), 0)]
    seen: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        is_array = stripped.startswith("[[")
        if not stripped.startswith("["):
            continue
        parsed = _dotted_key(stripped[2 if is_array else 1 :])
        if parsed is None or not parsed[1].startswith("]]" if is_array else "]"):
            continue
        key = parsed[0]
        if is_array:
            seen[key] = seen.get(key, -1) + 1
            found.append(((*key, seen[key]), number))
        else:
            found.append((key, number))
    ends = [line - 1 for _, line in found[1:]] + [len(lines)]
    return [_Section(path, line, end) for (path, line), end in zip(found, ends, strict=True)]


def _key_on(line: str) -> tuple[str, ...] | None:
    """The dotted key a ``key = value`` line assigns, if it is one."""
    if line.lstrip().startswith(("[", "#")):
        return None
    parsed = _dotted_key(line)
    if parsed is None or not parsed[1].startswith("="):
        return None
    return parsed[0]


def find_line(text: str, path: KeyPath) -> int:
    """The 1-based line where ``path`` is set, or its nearest enclosing section's header."""
    lines = text.splitlines()
    sections = _sections(lines)
    for section in sections:
        if section.path == path and section.line:
            return section.line
    enclosing = [s for s in sections if path[: len(s.path)] == s.path]
    for section in sorted(enclosing, key=lambda s: -len(s.path)):
        rest = path[len(section.path) :]
        for number in range(section.line + 1, section.end + 1):
            key = _key_on(lines[number - 1])
            if key is None:
                continue
            n = min(len(key), len(rest))
            if n and key[:n] == rest[:n]:
                return number
    # A header that starts with the path: [tables.public.products] for ("tables", "public").
    for section in sections:
        if section.line and section.path[: len(path)] == path:
            return section.line
    best = max(enclosing, key=lambda s: len(s.path))
    return max(best.line, 1)


def key_at(text: str, line: int) -> KeyPath:
    """The path of what line ``line`` (1-based) sets or opens; the section's path at worst."""
    lines = text.splitlines()
    for section in _sections(lines):
        if section.line == line:
            return section.path
        if section.line < line <= section.end:
            key = _key_on(lines[line - 1]) if line <= len(lines) else None
            return section.path + (key or ())
    return ()
