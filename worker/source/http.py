"""The HTTP session a job gets (`ctx.http`): every request bounded, errors made plain.

Every request has a connect and a read timeout, a deadline for the whole of it (connect to last
byte, retry waits included: `HTTP_DEADLINE`) and a size limit (`HTTP_MAX_BYTES`; a body read
whole, `HTTP_MAX_BUFFERED_BYTES`). Idempotent requests are retried on connection errors and on
429, 502, 503, 504, waiting what a Retry-After asks (`worker.source.retry`) — never past the
deadline, and never through a shutdown. Whatever goes wrong is one line naming the request with
its credentials masked: `GET https://… answered 500 Internal Server Error`.

What a job reads with it: `get_json` (the document, held whole), the streaming readers
`json_items`, `ndjson` and `csv_rows` (item by item, in flat memory), `open` (the raw bytes,
bounded) and `pages` (a paginated API, page by page).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from config import Settings
from worker.errors import SourceError
from worker.logs import get_logger
from worker.redact import safe_url
from worker.source import pages, readers
from worker.source.body import Body, Limits, root_cause
from worker.source.paginators import Page, Paginator
from worker.source.retry import WaitingRetry

USER_AGENT = "nightshift/0.1"
# How often a wait between retries looks for a shutdown.
WAIT_SLICE = 0.1

log = get_logger("nightshift.source")


class Session(requests.Session):
    """A requests.Session whose every request is bounded, and that stops on shutdown."""

    def __init__(self, settings: Settings, before_request: Callable[[], None] | None = None):
        super().__init__()
        self.timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self.deadline = settings.http_deadline
        self.max_bytes = settings.http_max_bytes
        self.max_buffered_bytes = settings.http_max_buffered_bytes
        self._before_request = before_request
        self._current = threading.local()  # the limits of the request being made, for its waits
        self._secret_headers = {"authorization"}
        retry = WaitingRetry(
            total=settings.http_retries,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=("GET", "HEAD", "OPTIONS"),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.waiter = self._wait
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = USER_AGENT

    # -- any request -----------------------------------------------------------------------------
    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """requests' request, bounded. Unless `stream=True`, the body is read here (at most
        HTTP_MAX_BUFFERED_BYTES); with it, only the headers are (use `open` for a bounded body)."""
        stream = kwargs.pop("stream", False)
        limits = self._limits(method, url, kwargs.get("params"))
        response = self._send(method, url, limits, *args, **kwargs)
        if not stream:
            with Body(response, limits, gzip=False) as body:
                _hold(response, body.read(self.max_buffered_bytes))
        return response

    def open(
        self, url: str, *, gzip: bool | None = None, method: str = "GET", **kwargs: Any
    ) -> Body:
        """The body of a 2xx answer, to read as it arrives (`chunks()`, `file()`, `read(n)`);
        any other answer is a one-line SourceError. `gzip`: None undoes a gzip body found by
        its magic number (whatever the headers say), True insists on one, False never."""
        limits = self._limits(method, url, kwargs.get("params"))
        response = self._send(method, url, limits, **kwargs)
        if response.status_code >= 400:
            response.close()
            raise answered(response, limits.where)
        return Body(response, limits, gzip)

    # -- what a job reads ------------------------------------------------------------------------
    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET `url` and decode its JSON body, held whole (at most HTTP_MAX_BUFFERED_BYTES);
        any other answer is a one-line SourceError. For a large document, `json_items`."""
        return self.json_response(url, **kwargs)[1]

    def json_response(self, url: str, **kwargs: Any) -> tuple[requests.Response, Any]:
        """`get_json`, with the response (for its headers)."""
        with self.open(url, **kwargs) as body:
            _hold(body.response, body.read(self.max_buffered_bytes))
        try:
            return body.response, body.response.json()
        except ValueError as exc:
            raise SourceError(
                f"{body.where} sent malformed JSON ({exc}; {body.received} bytes)"
            ) from None

    def json_items(
        self, url: str, path: str | None = None, *, missing: str | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """The items of the JSON array at `path` (keys joined by dots: "features", "data.rows";
        none: the document is the array), one by one as they arrive. No array there: one line
        (`missing`, or "GET <url> sent no '<path>' list")."""
        with self.open(url, **kwargs) as body:
            yield from readers.json_items(body, path, missing)

    def ndjson(self, url: str, **kwargs: Any) -> Iterator[Any]:
        """One JSON value per line (NDJSON, JSON Lines), one by one as they arrive."""
        with self.open(url, **kwargs) as body:
            yield from readers.ndjson(body)

    def csv_rows(
        self,
        url: str,
        *,
        delimiter: str | None = None,
        dialect: str = "excel",
        encoding: str = "utf-8-sig",
        fieldnames: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[dict[str, str | None]]:
        """One dict per row, keyed by the header row (or `fieldnames`), as they arrive.
        `dialect`: "excel" (commas), "excel-tab", "unix"; `delimiter` overrides its separator."""
        fmt = {} if delimiter is None else {"delimiter": delimiter}
        with self.open(url, **kwargs) as body:
            yield from readers.csv_rows(body, dialect, encoding, fieldnames, **fmt)

    def pages(
        self,
        url: str,
        paginator: Paginator,
        *,
        items: str | None = None,
        resume: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[Page]:
        """The pages of a paginated JSON API, from the first (or from `resume`, a position a
        page gave as its `next`); `items`: the path of each page's list (none: the page is the
        list). See `worker.source.pages`; `ctx.paginate` adds resuming across runs."""
        return pages.walk(self, url, paginator, items=items, resume=resume, **kwargs)

    # -- bounds ----------------------------------------------------------------------------------
    def _limits(self, method: str, url: str, params: Any) -> Limits:
        return Limits(
            where=f"{method} {safe_url(pages.full_url(url, params))}",
            deadline=self.deadline,
            read_timeout=self.timeout[1],
            max_bytes=self.max_bytes,
            shutdown_check=self._before_request,
        )

    def _send(self, method: str, url: str, limits: Limits, *args: Any, **kwargs: Any) -> Any:
        """Send it (headers read, body not), within the limits; failures made one line."""
        if self._before_request is not None:
            self._before_request()
        timeout = kwargs.pop("timeout", None) or self.timeout
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        limits.read_timeout = read
        kwargs["timeout"] = (connect, min(read, limits.left()))
        header = getattr(kwargs.get("auth"), "header", None)
        if header:
            self._secret_headers.add(header.lower())
        self._current.limits = limits
        try:
            return super().request(method, url, *args, stream=True, **kwargs)
        except requests.Timeout:
            limits.check_deadline()  # if that is what ended it
            raise SourceError(f"{limits.where} timed out") from None
        except requests.RequestException as exc:
            limits.check_deadline()  # a read timed out at the deadline, retries used up
            raise SourceError(f"{limits.where} failed: {root_cause(exc)}") from None
        finally:
            self._current.limits = None

    def _wait(self, seconds: float, asked: bool, response: Any) -> None:
        """Wait before a retry (urllib3 decided there is one): within the request's deadline,
        a slice at a time so that a shutdown ends it."""
        limits: Limits | None = getattr(self._current, "limits", None)
        if limits is not None:
            if seconds > limits.left():
                if not asked:
                    raise limits.too_long()
                raise SourceError(
                    f"{limits.where} answered {response.status} {response.reason} and asked to"
                    f" wait {seconds:.0f} s, past its {limits.deadline:g} s deadline"
                )
            if asked and seconds > 0:
                log.info("source_retry_after", request=limits.where, wait_s=round(seconds, 3))
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._before_request is not None:
                self._before_request()
            time.sleep(min(left, WAIT_SLICE))
        if self._before_request is not None:
            self._before_request()

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        """On a redirect to another host, drop every credential header (requests drops only
        Authorization)."""
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in self._secret_headers:
                prepared_request.headers.pop(name, None)


def answered(response: requests.Response, where: str) -> SourceError:
    """The one line for a non-2xx answer."""
    return SourceError(f"{where} answered {response.status_code} {response.reason}")


def _hold(response: requests.Response, content: bytes) -> None:
    """Make `content` the response's body, as requests does when it reads one itself."""
    response._content = content
    response._content_consumed = True
