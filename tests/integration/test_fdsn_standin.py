"""The FDSN stand-in (tests/fdsn.py) answers as the USGS event service does, over its week."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fdsn import FdsnServer, week

WEEK = {"starttime": "2013-08-01", "endtime": "2013-08-17", "format": "geojson"}
ALL = len(week())


@pytest.fixture
def fdsn() -> Iterator[FdsnServer]:
    server = FdsnServer()
    yield server
    server.close()


def query(server: FdsnServer, path: str = "query", **params: object) -> requests.Response:
    """GET a method; a query asks for GeoJSON unless `format` is given (None: no format)."""
    if path == "query":
        params.setdefault("format", "geojson")
    return requests.get(f"{server.url}/{path}", params=params, timeout=10)


def times(response: requests.Response) -> list[int]:
    return [f["properties"]["time"] for f in response.json()["features"]]


def test_the_week_is_1718_events_and_a_search_without_starttime_covers_the_last_30_days(fdsn):
    everything = query(fdsn, **WEEK)
    default = query(fdsn, format="geojson")

    assert everything.status_code == 200
    assert everything.headers["Content-Type"] == "application/json"
    assert len(everything.json()["features"]) == ALL == 1718
    assert times(everything) == sorted(times(everything), reverse=True)  # orderby=time
    assert (default.status_code, default.content) == (204, b"")  # 2013 is not the last 30 days


def test_a_query_without_format_answers_quakeml_as_the_service_does(fdsn):
    window = {"starttime": "2013-08-01", "endtime": "2013-08-17", "limit": 3}

    for answer in (query(fdsn, **window, format=None), query(fdsn, **window, format="quakeml")):
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/xml"
        assert answer.text.startswith('<?xml version="1.0" encoding="UTF-8"?><q:quakeml ')
        assert answer.text.count("<event publicID=") == 3
        with pytest.raises(ValueError):  # what a client that forgot format= meets
            answer.json()
    assert query(fdsn, **window, format="csv").status_code == 400  # not made here: refused
    assert len(query(fdsn, **window, format="geojson").json()["features"]) == 3


def test_starttime_and_endtime_are_inclusive_on_origin_time_and_utc_unless_offset(fdsn):
    first = min(f["properties"]["time"] for f in week())  # 2013-08-09T03:33:49.000Z

    exact = query(fdsn, starttime="2013-08-09T03:33:49", endtime="2013-08-09T03:33:49.000")
    after = query(fdsn, starttime="2013-08-09T03:33:49.001", endtime="2013-08-09T04:00:00")
    offset = query(fdsn, starttime="2013-08-09T05:33:49+02:00", endtime="2013-08-09T03:33:49Z")

    assert times(exact) == [first] == times(offset)
    assert first not in times(after)


def test_updatedafter_keeps_events_updated_strictly_after_it(fdsn):
    newest = max(week(), key=lambda f: f["properties"]["updated"])

    at = query(fdsn, **WEEK, updatedafter="2013-08-16T03:33:08.054")
    before = query(fdsn, **WEEK, updatedafter="2013-08-16T03:33:08.053")

    assert at.status_code == 204
    assert [f["id"] for f in before.json()["features"]] == [newest["id"]]


def test_limit_and_offset_page_from_1_in_the_order_asked(fdsn):
    pages = [
        query(fdsn, **WEEK, orderby="time-asc", limit=700, offset=offset)
        for offset in (1, 701, 1401, 2101)
    ]

    assert [p.status_code for p in pages] == [200, 200, 200, 204]
    got = [t for page in pages[:3] for t in times(page)]
    assert got == sorted(f["properties"]["time"] for f in week())
    assert [len(p.json()["features"]) for p in pages[:3]] == [700, 700, 318]
    by_magnitude = query(fdsn, **WEEK, orderby="magnitude", limit=3).json()["features"]
    largest = sorted((f["properties"]["mag"] for f in week()), reverse=True)[:3]
    assert [f["properties"]["mag"] for f in by_magnitude] == largest == [6.6, 6.5, 6.1]


def test_a_search_past_the_limit_is_refused_in_plain_text_and_count_tells_the_number(fdsn):
    fdsn.search_limit = 500

    refused = query(fdsn, **WEEK, limit=200)
    counted = query(fdsn, "count", **WEEK)
    plain = query(fdsn, "count", starttime="2013-08-16", endtime="2013-08-17")
    fdsn.paged_past_limit = True  # as probes of the live USGS service report
    paged = query(fdsn, **WEEK, limit=200, offset=1601)
    unpaged = query(fdsn, **WEEK)

    assert refused.status_code == 400
    assert refused.headers["Content-Type"] == "text/plain"
    assert refused.text.startswith(
        "Error 400: Bad Request\n\n1718 matching events exceeds search limit of 500."
        " Modify the search to match fewer events.\n"
    )
    assert counted.json() == {"count": 1718, "maxAllowed": 500}
    assert plain.text == "21"
    assert (paged.status_code, len(paged.json()["features"])) == (200, 118)
    assert unpaged.status_code == 400


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"starttime": "yesterday-ish"}, 'Bad starttime value "yesterday-ish".'),
        ({"limit": "20001"}, 'Bad limit value "20001". Valid values are 1 <= limit <= 20000.'),
        ({"offset": "0"}, 'Bad offset value "0". Valid values are offset >= 1.'),
        ({"orderby": "depth"}, 'Bad orderby value "depth".'),
        ({"minmag": "3"}, "Unknown parameter 'minmag'."),
        ({"nodata": "200"}, 'Bad nodata value "200".'),
    ],
)
def test_bad_parameters_are_plain_text_400s(fdsn, params, reason):
    response = query(fdsn, **{**WEEK, **params})

    assert response.status_code == 400
    assert response.text.split("\n\n")[:2] == ["Error 400: Bad Request", reason]


def test_nodata_404_an_unknown_method_a_repeated_parameter_and_a_scripted_failure(fdsn):
    empty = query(fdsn, starttime="2020-01-01", endtime="2020-01-02", nodata=404)
    unknown = query(fdsn, "catalogs")
    twice = requests.get(f"{fdsn.url}/query?limit=1&limit=2", timeout=10)
    fdsn.fail(500, "Database unavailable.")
    failed = query(fdsn, **WEEK)

    assert (empty.status_code, empty.text.splitlines()[0]) == (404, "Error 404: Not Found")
    assert unknown.status_code == 404
    assert twice.status_code == 400
    assert failed.status_code == 500
    assert failed.text.split("\n\n")[:2] == [
        "Error 500: Internal Server Error",
        "Database unavailable.",
    ]


def test_revise_replaces_one_event_and_the_log_records_every_request(fdsn):
    event = week()[0]
    later = max(f["properties"]["updated"] for f in week()) + 60_000

    fdsn.revise(event["id"], updated=later, mag=4.2)
    found = query(fdsn, **WEEK, updatedafter="2013-08-16T03:33:09").json()["features"]

    assert [(f["id"], f["properties"]["mag"]) for f in found] == [(event["id"], 4.2)]
    assert week()[0]["properties"]["mag"] == 0.5  # the shared week is untouched
    [logged] = fdsn.requests
    assert (logged.path, logged.status, logged.events) == ("query", 200, 1)
    assert logged.params["updatedafter"] == "2013-08-16T03:33:09"
