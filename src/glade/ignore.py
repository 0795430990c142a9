""".gitignore-style file selection: which files of a folder a bundle (or an upload) takes.

Supports the common gitignore syntax: comments, ``!`` negation, ``/`` anchoring, trailing
``/`` for folders, ``*``, ``?``, ``[...]`` and ``**``; a ``.gitignore`` applies to its folder
and everything below it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["matching_files"]


def matching_files(app_dir: str | Path, *, always_excluded: Sequence[str] = ()) -> list[str]:
    """The files below ``app_dir`` that no ``.gitignore`` (at any level) nor
    ``always_excluded`` (gitignore syntax) leaves out: sorted posix paths relative to it."""
    root = Path(app_dir).resolve()
    found: list[str] = []
    base = _Rules.parse(always_excluded, prefix="")
    _walk(root, root, [base], found)
    return sorted(found)


def _walk(root: Path, folder: Path, rules: list[_Rules], found: list[str]) -> None:
    rel_dir = folder.relative_to(root).as_posix()
    prefix = "" if rel_dir == "." else rel_dir + "/"
    ignore = folder / ".gitignore"
    if ignore.is_file():
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        rules = [*rules, _Rules.parse(lines, prefix=prefix)]
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            rel = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if _ignored(rules, rel, is_dir=is_dir):
                continue
            if is_dir:
                _walk(root, Path(entry.path), rules, found)
            elif entry.is_file():  # a link to a file counts as the file
                found.append(rel)


def _ignored(rules: Sequence[_Rules], path: str, *, is_dir: bool) -> bool:
    verdict = False
    for group in rules:
        hit = group.match(path, is_dir=is_dir)
        if hit is not None:
            verdict = hit
    return verdict


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


@dataclass(frozen=True, slots=True)
class _Rules:
    """The patterns of one ``.gitignore``, relative to its folder (``prefix``)."""

    prefix: str
    rules: tuple[_Rule, ...]

    @classmethod
    def parse(cls, lines: Sequence[str], *, prefix: str) -> _Rules:
        return cls(prefix, tuple(r for r in map(_parse_rule, lines) if r is not None))

    def match(self, path: str, *, is_dir: bool) -> bool | None:
        """True (ignored), False (re-included by ``!``) or None (no pattern matches)."""
        if not path.startswith(self.prefix):
            return None
        rel = path[len(self.prefix) :]
        verdict: bool | None = None
        for rule in self.rules:
            if (is_dir or not rule.dir_only) and rule.regex.fullmatch(rel):
                verdict = not rule.negate
        return verdict


def _parse_rule(line: str) -> _Rule | None:
    """One gitignore line as a rule (None for blanks and comments)."""
    line = line.rstrip("\n")
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(line) > len(stripped):
        stripped += " "  # an escaped trailing space is kept
    line = stripped
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    elif line.startswith("\\"):
        line = line[1:] if line[1:2] in ("#", "!") else line
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    body = _translate(line.lstrip("/"))
    pattern = body if anchored else f"(?:.*/)?{body}"
    return _Rule(re.compile(pattern, re.S), negate, dir_only)


def _translate(pattern: str) -> str:
    """A gitignore glob as a regular expression over a relative posix path."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i) and i + 2 == n and (i == 0 or pattern[i - 1] == "/"):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            inner = pattern[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)
