"""Reading the TOML files of netsim (topologies, experiments) with errors that name file,
line and field: one reader and one line locator, shared by every loader.

A loader reads its file with :func:`read_text`, decodes it with :func:`decode` and finds the
line of a field with a :class:`Locator`; each raises the loader's own error class (a
:class:`~netsim.errors.TopologyError` or a subclass), whose message is
``FILE:LINE, field 'TABLE[INDEX].KEY': REASON``.
"""

from __future__ import annotations

import re
import tomllib

from netsim.errors import TopologyError

MAX_FILE_BYTES = 16 << 20
"""A topology of thousands of VMs is well under 1 MB; /dev/zero is not a netsim file."""


class Locator:
    """Finds the line of ``key`` in the ``index``-th ``[table]``/``[[table]]`` of a TOML
    text (``index`` -1: the single ``[table]``); the table's header line when the key is
    absent, None when the table is too."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.-]+)\s*\]")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.sections: list[tuple[str, int, int]] = []  # (table, ordinal, header line)
        self.keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        current: tuple[str, int] | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if m := self._HEADER.match(line):
                table = m.group(2)
                ordinal = counts.get(table, 0) if m.group(1) else -1
                counts[table] = counts.get(table, 0) + (1 if m.group(1) else 0)
                current = (table, ordinal)
                self.sections.append((table, ordinal, lineno))
            elif current and (m := self._KEY.match(line)):
                self.keys.setdefault((current[0], current[1], m.group(1)), lineno)

    def __call__(self, table: str, index: int, key: str) -> int | None:
        if (line := self.keys.get((table, index, key))) is not None:
            return line
        for t, ordinal, lineno in self.sections:
            if t == table and ordinal == index:
                return lineno
        return None


def decode(text: str, file: str | None, error: type[TopologyError] = TopologyError) -> dict:
    """The TOML document ``text``; ``error`` (with the line) if it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise error(f"not valid TOML: {exc}", file=file, line=int(m.group(1)) if m else None) from None


def read_text(path: str, what: str, error: type[TopologyError] = TopologyError, *,
              limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of the ``what`` file (e.g. "topology") at ``path``, at most ``limit``
    bytes; ``error`` naming the file (and the line of a bad byte)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read the {what} file: {exc.strerror}", file=path) from None
    if len(data) > limit:
        raise error(f"is larger than {limit >> 20} MiB; a {what} is a small TOML text file", file=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"not a TOML text file: its bytes are not UTF-8 text; give a {what} in TOML",
                    file=path, line=line) from None
