"""A response's body, read as it arrives: within the request's deadline and a size limit, gzip
undone, never held whole unless asked to (and then within a smaller limit).

Each read takes what the socket has (`read1`), with the socket's timeout cut to what is left of
the deadline: a source that trickles a byte every few seconds ends at the deadline, one that
goes silent at the read timeout or the deadline, whichever comes first. The size counted is
what the reader gets (after Content-Encoding and gzip are undone), so a gzip bomb stops at the
limit too. Every failure is one line naming the request (`GET <safe url> …`).
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from worker.errors import SourceError

CHUNK = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = zlib.MAX_WBITS | 16  # a gzip header and trailer, not raw deflate


class Limits:
    """What bounds one request: its deadline (monotonic time) and sizes, and where it went."""

    def __init__(
        self,
        where: str,
        deadline: float,
        read_timeout: float,
        max_bytes: int,
        shutdown_check: Callable[[], None] | None = None,
    ) -> None:
        self.where = where
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.max_bytes = max_bytes
        self.shutdown_check = shutdown_check
        self.ends = time.monotonic() + deadline

    def left(self) -> float:
        """Seconds left before the deadline; a SourceError once it has passed."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise self.too_long()
        return left

    def check_deadline(self) -> None:
        """A SourceError if the deadline has passed (what ended a timed-out read, maybe)."""
        if time.monotonic() >= self.ends - 0.01:
            raise self.too_long()

    def too_long(self) -> SourceError:
        return SourceError(f"{self.where} took longer than {self.deadline:g} s")

    def too_big(self, limit: int, setting: str) -> SourceError:
        return SourceError(f"{self.where} sent more than {limit} bytes ({setting})")


class Body:
    """The bytes of a streamed response. Iterate `chunks()` once, or `read()` it whole, or
    `file()` for a binary file object; close it (or use `with`) when done."""

    def __init__(self, response: requests.Response, limits: Limits, gzip: bool | None = None):
        self.response = response
        self.limits = limits
        self.gzip = gzip
        self.received = 0  # bytes handed on, after decoding
        self.complete = False

    @property
    def where(self) -> str:
        return self.limits.where

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else drop it."""
        if self.complete:
            self.response.raw.release_conn()
        else:
            self.response.close()

    def chunks(self) -> Iterator[bytes]:
        """The body in pieces as they arrive (decoded), within the deadline and HTTP_MAX_BYTES."""
        return self._counted(self.limits.max_bytes, "HTTP_MAX_BYTES")

    def read(self, limit: int, setting: str = "HTTP_MAX_BUFFERED_BYTES") -> bytes:
        """The whole body, refused (one line) beyond `limit` bytes."""
        if self.limits.max_bytes < limit:
            limit, setting = self.limits.max_bytes, "HTTP_MAX_BYTES"
        return b"".join(self._counted(limit, setting))

    def file(self) -> io.BufferedReader:
        """The body as a binary file object (for csv, line readers, ijson)."""
        return io.BufferedReader(_ChunkFile(self.chunks()), CHUNK)

    # -- the pieces ------------------------------------------------------------------------------
    def _counted(self, limit: int, setting: str) -> Iterator[bytes]:
        headers = self.response.headers
        declared = headers.get("Content-Length", "")
        # Refused before a byte is read; an encoded body's length is not what the reader gets.
        if declared.isdigit() and int(declared) > limit and "Content-Encoding" not in headers:
            raise self.limits.too_big(limit, setting)
        for chunk in self._decoded():
            self.received += len(chunk)
            if self.received > limit:
                raise self.limits.too_big(limit, setting)
            yield chunk

    def _decoded(self) -> Iterator[bytes]:
        chunks = self._wire()
        if self.gzip is False:
            return chunks
        head = b""
        for chunk in chunks:  # enough bytes to recognise gzip by its magic number
            head += chunk
            if len(head) >= len(GZIP_MAGIC):
                break
        rest = _chain(head, chunks)
        if self.gzip or head.startswith(GZIP_MAGIC):
            return self._gunzip(rest)
        return rest

    def _wire(self) -> Iterator[bytes]:
        """What the server sends, Content-Encoding undone, a read at a time."""
        raw, limits = self.response.raw, self.limits
        while True:
            if limits.shutdown_check is not None:
                limits.shutdown_check()
            left = limits.left()
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(min(limits.read_timeout, left))
            try:
                data = raw.read1(CHUNK, decode_content=True)
            except ReadTimeoutError:
                limits.check_deadline()  # if that is what ended the read
                raise SourceError(f"{limits.where} timed out") from None
            except (Urllib3Error, OSError) as exc:
                raise SourceError(f"{limits.where} failed: {root_cause(exc)}") from None
            if not data:
                self.complete = True
                return
            yield data

    def _gunzip(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """gzip undone, member after member (as `cat a.gz b.gz` makes)."""
        inflater, fed = zlib.decompressobj(GZIP_WBITS), False
        try:
            for chunk in chunks:
                data = chunk
                while data:
                    fed = True
                    out = inflater.decompress(data, CHUNK)
                    if out:
                        yield out
                    if inflater.eof:  # a member ended: what follows is the next one
                        data = inflater.unused_data
                        inflater, fed = zlib.decompressobj(GZIP_WBITS), False
                    else:
                        data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise SourceError(f"{self.where} sent a malformed gzip body ({exc})") from None
        if fed:
            raise SourceError(f"{self.where} sent a truncated gzip body")


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


class _ChunkFile(io.RawIOBase):
    """A read-only raw file over an iterator of byte strings."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, in a few words."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    # urllib3 puts the whole connection object repr in; keep the reason at the end.
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__
