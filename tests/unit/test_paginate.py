"""Pagination against real local HTTP servers: the five ways an API says where the next page
is, the end of the walk, loops refused, Retry-After honoured (bounded, interruptible), and
ctx.paginate's checkpoints: where the position of the next page is saved, and when."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import Settings
from tests.support import Seen, StubServer, wait_for
from worker import Context, Cursor, LinkHeader, NextUrl, Offset, PageNumber
from worker.errors import ShutdownRequested, SourceError
from worker.logs import get_logger
from worker.registry import Job
from worker.run.state import StateTracker
from worker.source.http import Session
from worker.source.paginators import link_target
from worker.source.retry import retry_after

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Seen], Answer]], StubServer]]:
    servers: list[StubServer] = []

    def start(answer: Callable[[Seen], Answer]) -> StubServer:
        servers.append(StubServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def session(before_request: Callable[[], None] | None = None, **settings: Any) -> Session:
    return Session(dataclasses.replace(Settings(), **settings), before_request=before_request)


def page(items: list[Any], **extra: Any) -> bytes:
    return json.dumps({"items": items, **extra}).encode()


def arg(seen: Seen, name: str, default: str = "") -> str:
    return seen.query.get(name, [default])[0]


def walk(http: Session, url: str, paginator: Any, **kwargs: Any) -> list[list[Any]]:
    return [p.items for p in http.pages(url, paginator, items="items", **kwargs)]


# -- the five ways -------------------------------------------------------------------------------
def test_link_header_follows_rel_next_relative_or_absolute_until_there_is_none(serve):
    def answer(seen: Seen) -> Answer:
        n, absolute = int(arg(seen, "page", "1")), server.url("/items")
        links = {
            1: '</items?page=2>; rel="next last"',  # several relation types
            2: f"<{absolute}?page=1>; rel=prev, <{absolute}?page=3>; rel=next",
            3: '</items?page=1>; rel="first"',
        }
        return 200, {"Link": links[n]}, page([n])

    server = serve(answer)

    assert walk(session(), server.url("/items"), LinkHeader()) == [[1], [2], [3]]
    assert [s.query for s in server.requests] == [{}, {"page": ["2"]}, {"page": ["3"]}]


def test_next_url_in_the_body_at_a_path(serve):
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "page", "1"))
        nxt = f"/items?page={n + 1}&size=2" if n < 3 else None
        return 200, {}, page([n], links={"next": nxt})

    server = serve(answer)

    pages = walk(session(), server.url("/items"), NextUrl("links.next"), params={"size": 2})
    assert pages == [[1], [2], [3]]
    assert [s.query for s in server.requests][1] == {"page": ["2"], "size": ["2"]}


def test_a_cursor_in_the_body_goes_back_as_a_query_parameter_until_has_more_is_false(serve):
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "after", "0"))
        return 200, {}, page([n], meta={"next": str(n + 1), "more": n < 2})

    server = serve(answer)

    paginator = Cursor("meta.next", param="after", has_more="meta.more")
    assert walk(session(), server.url("/items"), paginator, params={"q": "x"}) == [[0], [1], [2]]
    assert [s.query for s in server.requests] == [
        {"q": ["x"]},
        {"q": ["x"], "after": ["1"]},
        {"q": ["x"], "after": ["2"]},
    ]


def test_offset_counts_the_items_received_and_stops_at_the_total(serve):
    def answer(seen: Seen) -> Answer:
        offset = int(arg(seen, "offset"))
        capped = min(int(arg(seen, "limit")), 3)  # the API gives at most 3, whatever is asked
        return 200, {}, page(list(range(offset, min(offset + capped, 7))), total=7)

    server = serve(answer)

    pages = walk(session(), server.url("/items"), Offset(limit=100, total="total"))
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]
    assert [arg(s, "offset") for s in server.requests] == ["0", "3", "6"]


def test_page_numbers_stop_on_an_empty_page_or_at_the_number_of_pages(serve):
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "p"))
        return 200, {}, page([n] if n <= 3 else [], pages=3)

    server = serve(answer)
    url = server.url("/items")

    assert walk(session(), url, PageNumber(param="p")) == [[1], [2], [3], []]
    assert walk(session(), url, PageNumber(param="p", total="pages")) == [[1], [2], [3]]
    assert walk(session(), url, PageNumber(param="p", start=0)) == [[0], [1], [2], [3], []]


def test_an_empty_page_ends_the_walk_whatever_the_paginator_says(serve):
    server = serve(lambda seen: (200, {"Link": '</items?page=2>; rel="next"'}, page([])))

    assert walk(session(), server.url("/items"), LinkHeader()) == [[]]
    assert len(server.requests) == 1


def test_a_page_without_its_list_is_one_line(serve):
    url = serve(lambda seen: (200, {}, b'{"data": []}')).url("/items")

    with pytest.raises(SourceError) as raised:
        walk(session(), url, PageNumber(), params={"per_page": 5})

    assert str(raised.value) == f"GET {url}?per_page=5&page=1 sent no 'items' list"


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('<https://a/x?page=2>; rel="next"', "https://a/x?page=2"),
        ('<https://a/1>; rel="prev", <https://a/3>; rel="next"', "https://a/3"),
        ('<https://a/x?q=a,b>; title="a, b; c"; rel=next', "https://a/x?q=a,b"),
        ('<https://a/9>; REL="Last Next"', "https://a/9"),
        ('<https://a/1>; rel="prev"', None),
        ("", None),
    ],
)
def test_link_targets_are_read_as_rfc_8288_writes_them(header, target):
    assert link_target(header, "next") == target


# -- loops ---------------------------------------------------------------------------------------
def test_a_next_link_back_to_a_page_already_read_is_refused_in_one_line(serve):
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "page", "1"))
        return 200, {"Link": f'</items?page={n % 3 + 1}>; rel="next"'}, page([n])

    server = serve(answer)

    with pytest.raises(SourceError) as raised:
        walk(session(), server.url("/items"), LinkHeader(), params={"page": 1})

    assert str(raised.value) == (
        f"GET {server.url('/items')}?page=1 came round again after 3 pages:"
        " the API's pages go in a loop"
    )
    assert len(server.requests) == 3


def test_an_api_that_ignores_the_offset_is_refused_at_its_second_page(serve):
    url = serve(lambda seen: (200, {}, page([1, 2]))).url("/items")

    with pytest.raises(SourceError) as raised:
        walk(session(), url, Offset(limit=2))

    assert str(raised.value) == (
        f"GET {url}?offset=2&limit=2 sent the page before again: the API's pages go in a loop"
    )


# -- Retry-After ---------------------------------------------------------------------------------
def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("status", "value"),
    [(429, lambda: "1"), (503, lambda: http_date(2))],
    ids=["429-seconds", "503-http-date"],
)
def test_a_page_answering_429_or_503_waits_its_retry_after_then_is_asked_again(
    serve, status, value
):
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "page"))
        if n == 2 and sum(arg(s, "page") == "2" for s in server.requests) == 1:
            return status, {"Retry-After": value()}, b"{}"
        return 200, {}, page([n] if n <= 3 else [])

    server = serve(answer)

    assert walk(session(), server.url("/items"), PageNumber()) == [[1], [2], [3], []]
    first, again = [s.at for s in server.requests if arg(s, "page") == "2"]
    assert again - first >= 1.0  # an HTTP-date has whole seconds: 2 s from now is 1 to 2 s


def test_a_streamed_read_answering_429_waits_its_retry_after_too(serve):
    def answer(seen: Seen) -> Answer:
        if len(server.requests) == 1:
            return 429, {"Retry-After": "1"}, b"slow down"
        return 200, {}, b'{"features": [1, 2]}'

    server = serve(answer)

    assert list(session().json_items(server.url("/feed"), "features")) == [1, 2]
    assert server.requests[1].at - server.requests[0].at >= 1.0


def test_a_retry_after_beyond_the_deadline_fails_at_once_in_one_line(serve):
    url = serve(lambda seen: (429, {"Retry-After": "3600"}, b"{}")).url("/items")
    started = time.monotonic()

    with pytest.raises(SourceError) as raised:
        session(http_deadline=2.0).get_json(url)

    assert str(raised.value) == (
        f"GET {url} answered 429 Too Many Requests and asked to wait 3600 s, past its 2 s deadline"
    )
    assert time.monotonic() - started < 1.0


def test_retries_used_up_leave_the_answer_as_it_is(serve):
    url = serve(lambda seen: (503, {"Retry-After": "0"}, b"{}")).url("/items")

    with pytest.raises(SourceError) as raised:
        walk(session(http_retries=2), url, PageNumber())

    assert str(raised.value) == f"GET {url}?page=1 answered 503 Service Unavailable"


def test_a_shutdown_ends_a_retry_after_wait(serve):
    stop = threading.Event()

    def check() -> None:
        if stop.is_set():
            raise ShutdownRequested()

    server = serve(lambda seen: (429, {"Retry-After": "30"}, b"{}"))

    def stop_once_asked() -> None:
        wait_for(lambda: server.requests, what="the first request")
        stop.set()

    threading.Thread(target=stop_once_asked, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ShutdownRequested):
        session(check).get_json(server.url("/items"))

    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Fri, 27 Nov 2026 12:00:30 GMT", 30.0),
        ("Friday, 27-Nov-26 12:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds):
    now = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)

    assert retry_after(value, now=now) == seconds


# -- ctx.paginate: checkpoints ---------------------------------------------------------------------
def context(http: Session, saved: dict[str, Any]) -> tuple[Context, StateTracker]:
    job = Job(
        name="paged",
        function=lambda ctx: iter(()),
        table="paged",
        columns={"id": "integer"},
        key=("id",),
    )
    tracker = StateTracker(job, saved)
    ctx = Context("paged", 1, http, get_logger("jobs.paged"), _state=tracker)
    return ctx, tracker


def numbered_pages(serve: Callable[..., StubServer], pages: int = 2, size: int = 3) -> StubServer:
    def answer(seen: Seen) -> Answer:
        n = int(arg(seen, "page"))
        first = (n - 1) * size + 1
        return 200, {}, page(list(range(first, first + size)) if n <= pages else [])

    return serve(answer)


def test_the_next_page_is_checkpointed_as_the_job_takes_a_pages_last_item(serve):
    server = numbered_pages(serve)
    ctx, tracker = context(session(), {})
    start = f"PageNumber GET {server.url('/items')}"

    pending = []
    for item in ctx.paginate(server.url("/items"), PageNumber(), items="items"):
        pending.append((item, tracker.for_batch(final=False)))

    to_page_2 = {"pagination": {"start": start, "next": {"page": 2}}}
    to_page_3 = {"pagination": {"start": start, "next": {"page": 3}}}
    assert pending == [
        (1, None),
        (2, None),
        (3, to_page_2),  # taken with the page's last item: saved with the batch that holds it
        (4, to_page_2),
        (5, to_page_2),
        (6, to_page_3),
    ]
    assert tracker.for_batch(final=True) == {"pagination": None}  # page 3 was empty: the end


def test_paginate_resumes_from_the_saved_position_of_the_same_request_only(serve):
    server = numbered_pages(serve, pages=4)
    url = server.url("/items")
    saved = {"pagination": {"start": f"PageNumber GET {url}", "next": {"page": 3}}}
    elsewhere = {"pagination": {"start": f"Offset GET {url}", "next": {"page": 3}}}

    def items(saved: dict[str, Any], **params: Any) -> list[int]:
        ctx, _ = context(session(), saved)
        return list(ctx.paginate(url, PageNumber(), items="items", params=params))

    assert items(saved) == list(range(7, 13))  # pages 3 and 4
    assert items(saved, q=1) == list(range(1, 13))  # other parameters: from the first page
    assert items(elsewhere) == list(range(1, 13))  # another kind of paginator's position
    assert items({"pagination": None}) == list(range(1, 13))  # the last run reached the end
