"""The HTTP session a job gets: timeouts always set, idempotent GETs retried, errors made plain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from config import Settings
from worker.errors import SourceError
from worker.redact import safe_url

USER_AGENT = "nightshift/0.1"


class Session(requests.Session):
    """A requests.Session whose every request has a timeout, and that stops on shutdown."""

    def __init__(self, settings: Settings, before_request: Callable[[], None] | None = None):
        super().__init__()
        self.timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._before_request = before_request
        retry = Retry(
            total=settings.http_retries,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=("GET", "HEAD", "OPTIONS"),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._before_request is not None:
            self._before_request()
        kwargs.setdefault("timeout", self.timeout)
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.Timeout:
            raise SourceError(f"{method} {safe_url(url)} timed out") from None
        except requests.RequestException as exc:
            reason = _root_cause(exc)
            raise SourceError(f"{method} {safe_url(url)} failed: {reason}") from None

    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET `url` and decode its JSON body; any other answer is a one-line SourceError."""
        response = self.get(url, **kwargs)
        where = f"GET {safe_url(url)}"
        if response.status_code >= 400:
            raise SourceError(f"{where} answered {response.status_code} {response.reason}")
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"{where} sent malformed JSON ({exc}; {len(response.content)} bytes)"
            ) from None


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    # urllib3 puts the whole connection object repr in; keep the reason at the end.
    return text.rsplit(": ", 1)[-1] if ": " in text else text or type(exc).__name__
