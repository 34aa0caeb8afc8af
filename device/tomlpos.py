"""Line numbers for TOML keys, so config errors can say ``site.toml:42``.

Stdlib only: the device's config loader uses it on the Pi, the hub's site loader too.

``tomllib`` gives values but no positions. This module scans the text once
and maps each key path it can see - ``("device", 3, "room")`` for the ``room``
key of the fourth ``[[device]]`` table - to its 1-based line. It understands
ordinary layouts (``[table]``, ``[[array.of.tables]]``, ``key = value``); keys
inside inline tables or multi-line values fall back to their table's header
line, which is still the right place to look.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _split_dotted(name: str) -> list[str]:
    return [part.strip().strip("\"'") for part in name.split(".")]


class Positions:
    """Key path -> line number for one TOML text."""

    def __init__(self, text: str):
        self._lines: dict[Path, int] = {}
        counts: dict[Path, int] = {}
        current: Path = ()
        in_multiline = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            if m := _ARRAY_HEADER.match(line):
                parent = self._resolve(_split_dotted(m.group(1))[:-1], counts)
                base = parent + (_split_dotted(m.group(1))[-1],)
                index = counts.get(base, 0)
                counts[base] = index + 1
                current = base + (index,)
                self._lines.setdefault(base, lineno)
                self._lines[current] = lineno
            elif m := _TABLE_HEADER.match(line):
                current = self._resolve(_split_dotted(m.group(1)), counts)
                self._lines.setdefault(current, lineno)
            elif m := _KEY.match(line):
                key_path = current + tuple(_split_dotted(m.group(1)))
                self._lines.setdefault(key_path, lineno)
                rest = line[m.end():]
                if rest.count('"""') == 1 or rest.count("'''") == 1:
                    in_multiline = True

    @staticmethod
    def _resolve(names: list[str], counts: dict[Path, int]) -> Path:
        """A dotted name to a path, taking the latest element of each array of tables."""
        path: Path = ()
        for name in names:
            path = path + (name,)
            if path in counts:
                path = path + (counts[path] - 1,)
        return path

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest enclosing table, or ``None``."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None


def dotted(path: Path) -> str:
    """``("device", 3, "room")`` -> ``"device[3].room"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def undotted(text: str) -> Path:
    """``"device[3].room"`` -> ``("device", 3, "room")`` (the inverse of :func:`dotted`)."""
    path: list[str | int] = []
    for name in text.split("."):
        base, *indexes = name.split("[")
        path.append(base)
        path.extend(int(index.rstrip("]")) for index in indexes if index.rstrip("]").isdigit())
    return tuple(path)
