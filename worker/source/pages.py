"""Walking a paginated JSON API: each page's items, and the position of the next page.

A walk asks for the first page (or for the position it resumes from), takes the page's items
(the list at `items`, or the page itself), asks its paginator where the next page is, and goes
on until there is none or a page is empty. It refuses to go round in a loop: a request it
already made, or a page identical to the one before (an API that ignores the offset), is one
line. Each page is one request through the session, so each has the deadline, the size limit
(HTTP_MAX_BUFFERED_BYTES: a page is held whole) and the retries — a 429 or 503 on page 37
waits its Retry-After and asks again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import requests

from worker.errors import SourceError
from worker.redact import safe_url
from worker.source.auth import without_param
from worker.source.paginators import Page, PageRequest, Paginator, Position, dig

if TYPE_CHECKING:
    from worker.source.http import Session


def walk(
    session: Session,
    url: str,
    paginator: Paginator,
    items: str | None = None,
    params: Mapping[str, Any] | None = None,
    resume: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Iterator[Page]:
    """The pages from the first (or from the position `resume`), one request each."""
    start = PageRequest(url, dict(params or {}))
    position: Position | None = dict(resume) if resume else None
    asked: set[bytes] = set()
    previous: bytes | None = None
    # A key the auth adds to the query, and a server echoes into next links, is not kept.
    query_key = getattr(kwargs.get("auth"), "query", None)
    number = 0
    while True:
        request = paginator.request(start, position)
        full = full_url(request.url, request.params)
        seen = hashlib.blake2b(full.encode(), digest_size=16).digest()
        if seen in asked:
            raise SourceError(
                f"GET {safe_url(full)} came round again after {number} pages:"
                " the API's pages go in a loop"
            )
        asked.add(seen)
        number += 1
        response, body = session.json_response(request.url, params=request.params, **kwargs)
        found = body if items is None else dig(body, items)
        where = f"GET {safe_url(full)}"
        if not isinstance(found, list):
            what = f"'{items}' list" if items else "list (a JSON array)"
            raise SourceError(f"{where} sent no {what}")
        digest = hashlib.blake2b(response.content, digest_size=16).digest()
        if found and digest == previous:
            raise SourceError(f"{where} sent the page before again: the API's pages go in a loop")
        previous = digest
        page = Page(number, request, position, response, body, found)
        if found:
            page.next = paginator.next(page)
        if page.next and query_key and "url" in page.next:
            page.next = {**page.next, "url": without_param(page.next["url"], query_key)}
        yield page
        if page.next is None:
            return
        position = page.next


def full_url(url: str, params: Any = None) -> str:
    """The URL requests asks for, `params` encoded into its query (`url` itself without)."""
    if not params:
        return url
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, params)
    except (requests.RequestException, ValueError):
        return url  # the request itself will say what is wrong with it
    return prepared.url or url
