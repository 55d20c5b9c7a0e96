"""Streaming readers: a body turned into items one at a time, never held whole.

- `json_items`: the items of a JSON array, at the top or at a path of keys (`"features"`,
  `"data.results"`), parsed incrementally by ijson (its C backend, yajl2_c, when the wheel has
  it; else its pure-Python one). Numbers with a fraction become floats, as `json.loads` makes.
- `ndjson`: one JSON value per line (blank lines skipped).
- `csv_rows`: a header row, then one dict per row; any dialect or delimiter, any encoding.

Malformed input is a one-line SourceError naming the request and where it broke.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import ijson

from worker.errors import SourceError
from worker.source.body import CHUNK, Body


def _backend() -> Any:
    for name in ("yajl2_c", "python"):
        try:
            return ijson.get_backend(name)
        except ImportError:
            continue
    raise ImportError("no ijson backend")  # unreachable: the python backend always loads


IJSON = _backend()


def ijson_prefix(path: str | None) -> str:
    """ijson's prefix for the items of the array at `path` ("" or None: the document itself)."""
    return f"{path}.item" if path else "item"


def json_items(body: Body, path: str | None = None, missing: str | None = None) -> Iterator[Any]:
    """The items of the array at `path`, one by one. A document with no array there is a
    one-line SourceError (`missing`, or "GET <url> sent no '<path>' list")."""
    source = _Watched(body, path or "")
    try:
        # ijson's generator pulls the chunks itself: twice as fast as pushing them to its
        # coroutine, and as fast as json.loads on the C backend (bench/stream.py).
        yield from IJSON.items(source, ijson_prefix(path), use_float=True, buf_size=CHUNK)
    except ijson.JSONError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(
            f"{body.where} sent malformed JSON ({detail}; {body.received} bytes)"
        ) from None
    finally:
        source.close()
    if not source.found:
        what = f"'{path}' list" if path else "list (a JSON array)"
        raise SourceError(missing or f"{body.where} sent no {what}")


class _Watched:
    """The body as ijson reads it, a chunk at a time, shown to a second parser that looks for
    the array's start (only until it is found: so a document without one can be told from an
    empty array)."""

    def __init__(self, body: Body, container: str) -> None:
        self._chunks = body.chunks()
        self._container = container
        self._events = ijson.sendable_list()
        self._watcher = IJSON.parse_coro(self._events)
        self.found = False

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        chunk = next(self._chunks, b"")
        if not self.found and chunk:
            self._watcher.send(chunk)
            self.found = any(
                p == self._container and e == "start_array" for p, e, _ in self._events
            )
            del self._events[:]
        return chunk

    def close(self) -> None:
        with contextlib.suppress(ijson.JSONError):  # it may have seen part of a document
            self._watcher.close()


def ndjson(body: Body) -> Iterator[Any]:
    """One JSON value per line (NDJSON / JSON Lines); blank lines are skipped."""
    for number, line in enumerate(body.file(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line.rstrip(b"\r\n"))  # positions within the line
        except ValueError as exc:
            raise SourceError(
                f"{body.where} sent malformed JSON on line {number} ({exc})"
            ) from None


def csv_rows(
    body: Body,
    dialect: str | type[csv.Dialect] = "excel",
    encoding: str = "utf-8-sig",
    fieldnames: list[str] | None = None,
    **fmt: Any,
) -> Iterator[dict[str, str | None]]:
    """A dict per row, keyed by the header row (or `fieldnames`). `fmt`: csv's format
    parameters (`delimiter=";"`, `quotechar`, …). A row longer than the header is an error;
    a shorter one gets None for the missing fields."""
    codecs.lookup(encoding)  # an unknown encoding fails here, before any request is read
    text = io.TextIOWrapper(body.file(), encoding=encoding, newline="")
    reader = csv.DictReader(text, fieldnames=fieldnames, dialect=dialect, restkey=_EXTRA, **fmt)
    try:
        for row in reader:
            if _EXTRA in row:
                header = len(reader.fieldnames or ())
                raise SourceError(
                    f"{body.where} sent a CSV row of {header + len(row[_EXTRA])} fields"
                    f" under a header of {header} (line {reader.line_num})"
                )
            yield row
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{body.where} sent text that is not {encoding}"
            f" (after line {reader.line_num}: {exc.reason})"
        ) from None
    except csv.Error as exc:
        raise SourceError(
            f"{body.where} sent malformed CSV (line {reader.line_num}: {exc})"
        ) from None


_EXTRA = "\x00extra"  # DictReader's key for the fields beyond the header's
