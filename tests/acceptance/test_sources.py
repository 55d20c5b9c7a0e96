"""A job's sources through the real CLI: a paginated API resumed mid-way after a SIGKILL,
credentials that never reach any output, a source that trickles past its deadline."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from tests.support import Seen, StubServer

JOBS = {"JOBS_PACKAGE": "tests.source_jobs"}
PAGES, PER_PAGE = 80, 10
TOKEN = "tok-Distinct1ve-s0urce-S3CRET"  # any occurrence in output is a leak
USER = "shop-user-distinct"


# -- a paginated API, five ways ------------------------------------------------------------------
class PagedApi:
    """80 pages of 10 items at /items, paginated as `style` says; `asked` is the page number
    each request asked for, in order (81: past the end, an empty page)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.asked: list[int] = []
        self.server = StubServer(self.answer)
        self.url = self.server.url("/items")

    def number(self, seen: Seen) -> int:
        query = {k: v[0] for k, v in seen.query.items()}
        if self.style == "cursor":
            return int(query.get("after", "c1")[1:])
        if self.style == "offset":
            return int(query.get("offset", "0")) // PER_PAGE + 1
        return int(query.get("page", "1"))

    def answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        n = self.number(seen)
        self.asked.append(n)
        first = (n - 1) * PER_PAGE + 1
        data = [{"id": i, "page": n} for i in range(first, first + PER_PAGE)] if n <= PAGES else []
        body: dict = {"data": data}
        headers = {"Content-Type": "application/json"}
        if n < PAGES:
            if self.style == "link":
                headers["Link"] = f'</items?page={n + 1}>; rel="next", </items?page=80>; rel="last"'
            elif self.style == "next":
                body["links"] = {"next": f"/items?page={n + 1}"}
            elif self.style == "cursor":
                body["next_cursor"] = f"c{n + 1}"
        return 200, headers, json.dumps(body).encode()

    def close(self) -> None:
        self.server.close()


KINDS = {"page": "PageNumber", "link": "LinkHeader", "next": "NextUrl", "cursor": "Cursor"}
KINDS["offset"] = "Offset"


def position_of_page(api: PagedApi, page: int) -> dict:
    return {
        "page": {"page": page},
        "link": {"url": f"{api.server.url('/items')}?page={page}"},
        "next": {"url": f"{api.server.url('/items')}?page={page}"},
        "cursor": {"cursor": f"c{page}"},
        "offset": {"offset": (page - 1) * PER_PAGE},
    }[api.style]


@pytest.fixture(params=list(KINDS))
def api(request) -> Iterator[PagedApi]:
    server = PagedApi(request.param)
    yield server
    server.close()


def test_a_run_killed_on_page_39_resumes_at_page_39_and_loads_every_item_once(cli, db, gate, api):
    env = {**JOBS, "PAGED_URL": api.url, "PAGED_PAGINATOR": api.style, "BATCH_SIZE": "10"}
    assert cli("migrate", **env).returncode == 0
    gate.install(table="paged", after=370)  # batches 1-37 (pages 1-37) commit, 38 waits

    # One batch in flight: while 38 is at the server, the job reads page 39, then waits.
    gate.kill_while_waiting(cli.spawn("run", "paged", **env), then=lambda: 39 in api.asked)

    # No batch past the one in flight was sent. Batch 38, at the server when its client died,
    # committed whole (one statement) with the position of page 39: it was checkpointed as the
    # job took page 38's last item, so it is saved with the batch that holds that item's row.
    assert api.asked == list(range(1, 40))
    assert db.scalar("SELECT count(*) FROM paged") == 380
    start = f"{KINDS[api.style]} GET {api.url}"
    assert db.state("paged") == {"pagination": {"start": start, "next": position_of_page(api, 39)}}

    api.asked.clear()
    rerun = cli("run", "paged", "--wait", **env)

    assert rerun.returncode == 0, rerun.stderr
    past_the_end = [81] if api.style in ("page", "offset") else []  # the empty page ends it
    assert api.asked == list(range(39, 81)) + past_the_end
    [resumed] = rerun.events("pagination_resumed")
    assert resumed["position"] == position_of_page(api, 39)
    ids = [row[0] for row in db.query("SELECT id FROM paged ORDER BY id")]
    assert ids == list(range(1, PAGES * PER_PAGE + 1))
    dead, second = db.runs()
    assert (dead["status"], dead["rows"], dead["batches"]) == ("abandoned", 380, 38)
    assert (second["status"], second["rows"], second["changed"]) == ("succeeded", 420, 420)
    assert db.state("paged") == {"pagination": None}

    api.asked.clear()
    third = cli("run", "paged", **env)

    assert third.returncode == 0, third.stderr
    assert api.asked == list(range(1, 81)) + past_the_end
    assert third.events("pagination_resumed") == []
    assert (db.runs()[-1]["rows"], db.runs()[-1]["changed"]) == (800, 0)


# -- credentials ---------------------------------------------------------------------------------
def accepted(kind: str, seen: Seen) -> bool:
    basic = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
    return {
        "bearer": seen.headers.get("Authorization") == f"Bearer {TOKEN}",
        "header": seen.headers.get("X-Api-Key") == TOKEN,
        "query": seen.query.get("api_key") == [TOKEN],
        "basic": seen.headers.get("Authorization") == basic,
    }[kind]


@pytest.fixture
def shop() -> Iterator[StubServer]:
    """Two pages of things behind credentials; `shop.refuse = True` answers 401 to all."""

    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if server.refuse or not accepted(server.kind, seen):
            return 401, {"Content-Type": "application/json"}, b'{"error": "bad credentials"}'
        page = int(seen.query.get("page", ["1"])[0])
        headers = {"Content-Type": "application/json"}
        if page == 1:
            # A next link that echoes the query key back, as some APIs do.
            echo = f"&api_key={TOKEN}" if server.kind == "query" else ""
            headers["Link"] = f'</things?page=2{echo}>; rel="next"'
        body = json.dumps({"data": [{"id": page * 10 + i} for i in range(3)]}).encode()
        return 200, headers, body

    server = StubServer(answer)
    server.refuse, server.kind = False, "bearer"
    yield server
    server.close()


def auth_env(kind: str, shop: StubServer) -> dict[str, str]:
    return {
        **JOBS,
        "AUTH_KIND": kind,
        "AUTH_URL": shop.url("/things"),
        "SHOP_TOKEN": TOKEN,
        "SHOP_USER": USER,
        "LOG_LEVEL": "DEBUG",  # urllib3 logs every request line, query included
    }


SHOWN = {
    "bearer": ("Authorization", "Bearer ***"),
    "header": ("X-Api-Key", "***"),
    "query": ("Authorization", None),
    "basic": ("Authorization", "Basic ***"),
}


@pytest.mark.parametrize("kind", list(SHOWN))
def test_credentials_from_the_environment_reach_the_source_and_no_output(cli, db, shop, kind):
    shop.kind = kind

    result = cli("run", "authed", **auth_env(kind, shop))

    assert result.returncode == 0, result.stderr
    assert sorted(r[0] for r in db.query("SELECT id FROM authed")) == [10, 11, 12, 20, 21, 22]
    assert all(accepted(kind, seen) for seen in shop.requests)
    [logged] = result.events("source_request")
    header, shown = SHOWN[kind]
    assert logged["headers"].get(header) == shown
    assert logged["status"] == 200
    if kind == "query":
        assert logged["url"] == f"{shop.url('/things')}?api_key=***"
    output = result.stdout + result.stderr
    assert TOKEN not in output
    assert base64.b64encode(f"{USER}:{TOKEN}".encode()).decode() not in output
    assert TOKEN not in json.dumps(db.state("authed"))


@pytest.mark.parametrize("kind", list(SHOWN))
def test_a_source_that_refuses_the_credentials_fails_with_one_line_and_no_token(
    cli, db, shop, kind
):
    shop.kind, shop.refuse = kind, True

    result = cli("run", "authed", **auth_env(kind, shop))

    assert result.returncode == 1
    error = f"source: GET {shop.url('/things')} answered 401 Unauthorized"
    assert result.stderr.strip() == f"error: authed failed: {error}"
    [logged] = result.events("source_request")
    assert logged["status"] == 401
    assert db.runs()[-1]["error"] == error
    history = cli("runs", "--json", **JOBS)
    assert json.loads(history.stdout)[0]["error"] == error
    for output in (result.stdout, result.stderr, history.stdout):
        assert TOKEN not in output
    requests_logged = [line for line in result.logs if line["logger"].startswith("urllib3")]
    assert len(requests_logged) >= 2  # the request lines were logged, and masked


def test_a_missing_credential_variable_fails_the_run_naming_it(cli, db, shop):
    env = auth_env("bearer", shop)
    del env["SHOP_TOKEN"]

    result = cli("run", "authed", **env)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: authed failed: job: MissingSecret: the environment has no SHOP_TOKEN (Bearer)"
    )
    assert shop.requests == []


# -- a source that trickles ----------------------------------------------------------------------
def test_a_feed_that_trickles_a_byte_every_half_second_fails_at_its_deadline(cli, db):
    def trickle(seen: Seen) -> tuple[int, dict[str, str], Iterator[bytes]]:
        def body() -> Iterator[bytes]:
            yield b'{"type": "FeatureCollection", "features": ['
            for _ in range(240):  # two minutes of it, if nothing stopped the client
                time.sleep(0.5)  # the source's pace, not a test waiting for an event
                yield b" "

        return 200, {"Content-Type": "application/json", "Content-Length": "100000"}, body()

    server = StubServer(trickle)
    try:
        url = server.url("/feed.geojson")
        started = time.monotonic()
        result = cli("run", "earthquakes", USGS_FEED_URL=url, HTTP_DEADLINE="2")
        elapsed = time.monotonic() - started
    finally:
        server.close()

    assert result.returncode == 1
    error = f"source: GET {url} took longer than 2 s"
    assert result.stderr.strip() == f"error: earthquakes failed: {error}"
    assert db.runs()[-1]["error"] == error
    assert elapsed < 20  # the CLI's start and finish, and 2 s of trickle
    assert len(server.requests) == 1  # a deadline is not retried
