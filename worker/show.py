"""What the operator's commands print: tables and JSON documents, whose values came from rows,
sources, error texts and the database, shown so that a terminal displays them and obeys none.

A table cell passes through `printable` (`\\x1b`, `\\n` and bidi marks escaped: one row, one
line, the terminal's title and colours left alone). A JSON document's strings do too (see
`json_text`).
"""

from __future__ import annotations

import json
from typing import Any

from worker.store.records import RunRecord
from worker.text import printable


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Aligned columns, every cell escaped; "(none)" under the header when there is no row."""
    cells = [header, *[[printable(str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return lines if rows else [*lines, "(none)"]


def json_text(value: Any) -> str:
    """`value` as indented JSON, each string (key or value) passed through `printable` first.

    The encoder alone would write pure ASCII (`\\u001b`), safe to print, but a script reading
    the document, or `jq -r .error`, would decode it back into the raw escape sequence, and a
    lone surrogate would stop a strict parser. So a string's control characters, bidi marks and
    lone surrogates arrive as text (`\\x1b`, as the tables show them): the document stays valid
    JSON whatever a value holds, at the cost of those characters not coming back byte for byte
    (they are error texts and refused rows shown to people; the rows themselves are in the
    table and `rejects --replay` reads them from the database).
    """
    return json.dumps(_printable(value), indent=2)


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def params_text(run: RunRecord) -> str:
    """A run's parameters and window in a table cell: `region=ca api_key=*** since=2024-01-01`
    (a credential's value masked); "-" when it had none."""
    window = run.window
    words = [f"{name}={value}" for name, value in sorted(run.params.items())]
    words += [f"{end}={window[end]}" for end in ("since", "until") if window[end]]
    words += ["full_refresh"] if window["full_refresh"] else []
    return " ".join(words) or "-"
