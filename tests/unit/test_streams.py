"""The streaming readers and the bounds of every response, against real local HTTP servers:
JSON array items at a path, NDJSON, CSV, gzip however it comes, the deadline, the size limits."""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ijson
import pytest

from config import Settings
from tests.support import Seen, StubServer
from worker.errors import SourceError
from worker.source import readers
from worker.source.http import Session
from worker.source.readers import IJSON

Answer = tuple[int, dict[str, str], Any]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Seen], Answer]], StubServer]]:
    servers: list[StubServer] = []

    def start(answer: Callable[[Seen], Answer]) -> StubServer:
        servers.append(StubServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def body(data: bytes, **headers: str) -> Callable[[Seen], Answer]:
    return lambda seen: (200, headers, data)


def session(**settings: Any) -> Session:
    return Session(dataclasses.replace(Settings(), http_retries=0, **settings))


def test_the_c_backend_of_ijson_is_in_use():
    assert IJSON.backend_name == "yajl2_c"


def test_the_pure_python_backend_reads_the_same_items_where_the_c_one_is_missing(
    serve, monkeypatch
):
    monkeypatch.setattr(readers, "IJSON", ijson.get_backend("python"))
    server = serve(lambda seen: (200, {}, b'{"a": {"b": [1, {"x": 2.5}]}}'))

    assert list(session().json_items(server.url("/doc"), "a.b")) == [1, {"x": 2.5}]
    with pytest.raises(SourceError) as raised:
        list(session().json_items(server.url("/doc"), "a.c"))
    assert str(raised.value) == f"GET {server.url('/doc')} sent no 'a.c' list"


# -- JSON array items ----------------------------------------------------------------------------
def test_json_items_yields_the_items_of_the_array_at_a_path_as_json_loads_would(serve):
    document = {"meta": {"n": 3}, "data": {"rows": [1, {"x": 2.5, "y": [None, True]}, "three"]}}
    server = serve(body(json.dumps(document).encode()))

    items = list(session().json_items(server.url("/doc"), "data.rows"))

    assert items == [1, {"x": 2.5, "y": [None, True]}, "three"]
    assert type(items[1]["x"]) is float  # not ijson's default Decimal: jsonb takes floats


def test_json_items_without_a_path_reads_a_top_level_array_and_an_empty_one_is_no_error(serve):
    server = serve(lambda seen: (200, {}, b"[{}, {}]" if seen.path == "/two" else b"[]"))

    assert list(session().json_items(server.url("/two"))) == [{}, {}]
    assert list(session().json_items(server.url("/none"))) == []


@pytest.mark.parametrize(
    "document",
    [b'{"features": {"a": 1}}', b'{"type": "x"}', b"[1, 2]", b'{"features": null}'],
    ids=["an-object", "absent", "top-level-array", "null"],
)
def test_a_document_without_the_array_is_one_line_or_the_jobs_own(serve, document):
    server = serve(body(document))
    url = server.url("/feed")

    with pytest.raises(SourceError) as default:
        list(session().json_items(url, "features"))
    with pytest.raises(SourceError) as own:
        list(session().json_items(url, "features", missing="the feed has no 'features' list"))

    assert str(default.value) == f"GET {url} sent no 'features' list"
    assert str(own.value) == "the feed has no 'features' list"


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        (b'{"features": [{"id": 1}, {', "parse error: premature EOF"),
        (b"<html>maintenance</html>", "lexical error: invalid char in json text."),
    ],
    ids=["truncated", "html"],
)
def test_malformed_json_is_one_line_naming_the_request_and_the_bytes_read(serve, document, detail):
    server = serve(body(document))
    url = server.url("/feed")

    with pytest.raises(SourceError) as raised:
        list(session().json_items(url, "features"))

    assert str(raised.value).startswith(f"GET {url} sent malformed JSON ({detail}")
    assert str(raised.value).endswith(f"; {len(document)} bytes)")


def test_items_arrive_while_the_rest_of_the_body_has_not_been_sent(serve):
    taken = threading.Event()

    def answer(seen: Seen) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield b'{"features": [{"id": 1}, '
            # Until the client has the first item; a reader holding the body would wait forever.
            yield b'{"id": 2}]}' if taken.wait(10) else b"never: the client held the body"

        return 200, {}, pieces()

    items = session().json_items(serve(answer).url("/feed"), "features")

    assert next(items) == {"id": 1}
    taken.set()
    assert list(items) == [{"id": 2}]


# -- NDJSON --------------------------------------------------------------------------------------
def test_ndjson_yields_one_value_per_line_skipping_blank_ones(serve):
    server = serve(body(b'{"a": 1}\r\n\n  \n[2]\n"three"'))

    assert list(session().ndjson(server.url("/x.ndjson"))) == [{"a": 1}, [2], "three"]


def test_a_malformed_ndjson_line_is_one_line_naming_it(serve):
    url = serve(body(b'{"a": 1}\n\n{"a": \n')).url("/x.ndjson")

    with pytest.raises(SourceError) as raised:
        list(session().ndjson(url))

    assert str(raised.value) == (
        f"GET {url} sent malformed JSON on line 3 (Expecting value: line 1 column 7 (char 6))"
    )


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_rows_are_dicts_by_the_header_with_quoted_newlines_and_a_bom_dropped(serve):
    text = '\ufeffid,name,note\r\n1,Ann,"two\r\nlines"\r\n2,"Bo, Jr.",\r\n3,Cy\r\n'
    server = serve(body(text.encode()))

    rows = list(session().csv_rows(server.url("/export.csv")))

    assert rows == [
        {"id": "1", "name": "Ann", "note": "two\r\nlines"},
        {"id": "2", "name": "Bo, Jr.", "note": ""},
        {"id": "3", "name": "Cy", "note": None},
    ]


def test_csv_line_ends_split_across_reads_make_no_empty_rows(serve):
    pieces = [b"id;v\r", b"\n1;a\r", b"\n2;b", b"\r\n"]
    server = serve(lambda seen: (200, {}, iter(pieces)))

    rows = list(session().csv_rows(server.url("/x.csv"), delimiter=";"))

    assert rows == [{"id": "1", "v": "a"}, {"id": "2", "v": "b"}]


def test_csv_in_another_encoding_and_with_given_field_names(serve):
    server = serve(body("Zürich\t8000\nGenève\t1200\n".encode("latin-1")))

    rows = list(
        session().csv_rows(
            server.url("/x.tsv"),
            dialect="excel-tab",
            encoding="latin-1",
            fieldnames=["city", "zip"],
        )
    )

    assert rows == [{"city": "Zürich", "zip": "8000"}, {"city": "Genève", "zip": "1200"}]


def test_a_csv_row_longer_than_its_header_and_text_in_the_wrong_encoding_are_one_line(serve):
    server = serve(
        lambda seen: (200, {}, b"a,b\n1,2\n1,2,3\n" if seen.path == "/long" else b"a\n\xff\n")
    )
    long, latin = server.url("/long"), server.url("/latin")

    with pytest.raises(SourceError) as too_long:
        list(session().csv_rows(long))
    with pytest.raises(SourceError) as not_utf8:
        list(session().csv_rows(latin))

    assert (
        str(too_long.value) == f"GET {long} sent a CSV row of 3 fields under a header of 2 (line 3)"
    )
    assert str(not_utf8.value) == (
        f"GET {latin} sent text that is not utf-8-sig (after line 0: invalid start byte)"
    )


# -- gzip ----------------------------------------------------------------------------------------
ROWS = b'{"n": 1}\n{"n": 2}\n'


@pytest.mark.parametrize(
    ("data", "headers", "option"),
    [
        (gzip.compress(ROWS), {"Content-Encoding": "gzip"}, None),
        (gzip.compress(ROWS), {"Content-Type": "application/gzip"}, None),
        (gzip.compress(ROWS[:9]) + gzip.compress(ROWS[9:]), {}, None),
        (gzip.compress(ROWS), {}, True),
        (ROWS, {}, None),
    ],
    ids=["content-encoding", "a-gz-body", "two-members", "explicit", "plain"],
)
def test_gzip_is_undone_however_it_comes(serve, data, headers, option):
    url = serve(body(data, **headers)).url("/rows.ndjson.gz")

    assert list(session().ndjson(url, gzip=option)) == [{"n": 1}, {"n": 2}]


def test_gzip_false_leaves_the_bytes_and_a_bad_or_cut_gzip_body_is_one_line(serve):
    packed = gzip.compress(ROWS)
    server = serve(
        lambda seen: (200, {}, {"/cut": packed[:-9], "/plain": ROWS}.get(seen.path, packed))
    )
    http = session()

    with http.open(server.url("/raw"), gzip=False) as raw:
        assert raw.read(1000) == packed
    with pytest.raises(SourceError) as cut:
        list(http.ndjson(server.url("/cut")))
    with pytest.raises(SourceError) as plain:
        list(http.ndjson(server.url("/plain"), gzip=True))

    assert str(cut.value) == f"GET {server.url('/cut')} sent a truncated gzip body"
    assert str(plain.value) == (
        f"GET {server.url('/plain')} sent a malformed gzip body"
        " (Error -3 while decompressing data: incorrect header check)"
    )


# -- bounds --------------------------------------------------------------------------------------
def test_a_source_trickling_a_byte_every_half_second_ends_at_the_deadline(serve):
    def answer(seen: Seen) -> Answer:
        def pieces() -> Iterator[bytes]:
            yield b'{"features": ['
            for _ in range(240):
                time.sleep(0.5)  # the source's pace
                yield b" "

        return 200, {"Content-Length": "100000"}, pieces()

    url = serve(answer).url("/slow")
    started = time.monotonic()

    with pytest.raises(SourceError) as raised:
        list(session(http_deadline=2.0).json_items(url, "features"))

    assert str(raised.value) == f"GET {url} took longer than 2 s"
    assert 2.0 <= time.monotonic() - started < 3.0


def test_a_source_that_goes_silent_ends_at_the_deadline_before_the_read_timeout(serve):
    release = threading.Event()

    def answer(seen: Seen) -> Answer:
        def pieces() -> Iterator[bytes]:
            release.wait(30)  # headers sent, then not a byte
            yield b"x"

        return 200, {"Content-Length": "10"}, pieces()

    url = serve(answer).url("/silent")
    started = time.monotonic()
    try:
        with pytest.raises(SourceError) as raised:
            session(http_deadline=1.0, http_read_timeout=60.0).get(url)
    finally:
        release.set()

    assert str(raised.value) == f"GET {url} took longer than 1 s"
    assert time.monotonic() - started < 2.0


def test_a_source_that_holds_its_headers_ends_at_the_deadline(serve):
    release = threading.Event()

    def answer(seen: Seen) -> Answer:
        release.wait(30)
        return 200, {}, b"{}"

    url = serve(answer).url("/held")
    try:
        with pytest.raises(SourceError) as raised:
            session(http_deadline=1.0).get_json(url, params={"q": "x y"})
    finally:
        release.set()

    assert str(raised.value) == f"GET {url}?q=x+y took longer than 1 s"


def test_a_body_larger_than_the_limit_is_refused_declared_or_not(serve):
    data = b"[" + b"1," * 100 + b"1]"
    server = serve(
        lambda seen: (200, {}, data if seen.path == "/declared" else iter([data[:150], data[150:]]))
    )
    http = session(http_max_bytes=100)

    for path in ("/declared", "/streamed"):
        with pytest.raises(SourceError) as raised:
            list(http.json_items(server.url(path)))
        assert (
            str(raised.value) == f"GET {server.url(path)} sent more than 100 bytes (HTTP_MAX_BYTES)"
        )


def test_a_gzip_bomb_stops_at_the_limit_counted_after_decompression(serve):
    bomb = gzip.compress(b"[" + b" " * 10_000_000 + b"]")
    url = serve(body(bomb)).url("/bomb")

    with pytest.raises(SourceError) as raised:
        list(session(http_max_bytes=1_000_000).json_items(url))

    assert len(bomb) < 20_000
    assert str(raised.value) == f"GET {url} sent more than 1000000 bytes (HTTP_MAX_BYTES)"


def test_a_body_read_whole_has_the_smaller_limit(serve):
    url = serve(body(json.dumps(list(range(100))).encode())).url("/whole")
    http = session(http_max_buffered_bytes=50)

    with pytest.raises(SourceError) as by_get_json:
        http.get_json(url)
    with pytest.raises(SourceError) as by_get:
        http.get(url)

    expected = f"GET {url} sent more than 50 bytes (HTTP_MAX_BUFFERED_BYTES)"
    assert str(by_get_json.value) == str(by_get.value) == expected
    assert len(list(http.json_items(url))) == 100  # streamed: the larger limit


def test_get_json_keeps_its_one_line_errors(serve):
    server = serve(lambda seen: (500, {}, b"oops") if seen.path == "/500" else (200, {}, b"<html>"))

    with pytest.raises(SourceError) as failed:
        session().get_json(server.url("/500"))
    with pytest.raises(SourceError) as garbage:
        session().get_json(server.url("/html"))

    assert str(failed.value) == f"GET {server.url('/500')} answered 500 Internal Server Error"
    assert str(garbage.value) == (
        f"GET {server.url('/html')} sent malformed JSON"
        " (Expecting value: line 1 column 1 (char 0); 6 bytes)"
    )
