"""A local stand-in for the USGS FDSN event web service, over a week of real events.

`FdsnServer` is a real HTTP server on 127.0.0.1 answering `/fdsnws/event/1/query` and `/count`
over `fixtures/usgs_all_week_2013-08-16.geojson` (1,718 events, 2013-08-09 to 2013-08-16; the
same Feature shape as FDSN geojson), read once per test session. It honours what the
`earthquakes_history` job sends, as the real service does (../shared/notes/usgs-fdsn.md):

- `format`: `geojson` as the job asks; without it (or `quakeml`, `xml`) a query answers
  QuakeML, the service's default — an XML `q:quakeml` document of `event` elements — so a
  client that forgets to ask for GeoJSON fails here as it would against USGS; other formats
  (csv, kml, text) are refused, as this stand-in does not make them; `/count` without it
  answers plain text;
- `starttime`, `endtime`: ISO 8601, UTC unless an offset is given, inclusive, on the event's
  origin `time`; without `starttime` a search covers the last 30 days, as USGS's does;
- `updatedafter`: events updated strictly after it;
- `orderby`: `time` (newest first, the default), `time-asc`, `magnitude`, `magnitude-asc`;
- `limit` (1..20000) and `offset` (1-based);
- `nodata`: 204 (the default: No Content, empty body) or 404 for an empty answer;
- a search limit (`search_limit`, 20000 by default): a search matching more is refused with a
  400 and the service's own text ("N matching events exceeds search limit of L. ..."). With
  `paged_past_limit` a search that sends `limit` is answered anyway, a page at a time, as
  probes of the live USGS service report; by default it is refused, as the FDSN notes say.

Errors are plain text, as FDSN's are: "Error 400: Bad Request", a blank line, the reason.
Every request is logged (`requests`: path, parameters, status, events sent).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEEK = Path(__file__).parent / "fixtures" / "usgs_all_week_2013-08-16.geojson"
BASE = "/fdsnws/event/1"
MAX_LIMIT = 20000
PARAMETERS = {"format", "starttime", "endtime", "updatedafter", "orderby", "limit", "offset"}
PARAMETERS |= {"nodata"}
# What `format` may ask of this stand-in: GeoJSON, or QuakeML (the service's default).
FORMATS = {"geojson", "quakeml", "xml"}
ORDERS = {
    "time": (lambda f: f["properties"]["time"], True),
    "time-asc": (lambda f: f["properties"]["time"], False),
    "magnitude": (lambda f: f["properties"]["mag"] or 0, True),
    "magnitude-asc": (lambda f: f["properties"]["mag"] or 0, False),
}
REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


@functools.cache
def week() -> tuple[dict[str, Any], ...]:
    """The week's features, read once. Shared: never change one in place (see `revise`)."""
    return tuple(json.loads(WEEK.read_text())["features"])


def epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_time(name: str, text: str) -> int:
    """An FDSN time parameter, in epoch milliseconds; naive means UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refusal(400, f'Bad {name} value "{text}".') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return epoch_ms(moment)


class Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Logged:
    """One request the stand-in answered."""

    path: str  # "query" or "count" (or what else was asked)
    params: dict[str, str]
    status: int
    events: int = 0  # features sent (query) or counted (count)
    body: str = ""  # the plain-text body of an error


class FdsnServer:
    """The stand-in: `url` is the service's base (`…/fdsnws/event/1`)."""

    def __init__(self, search_limit: int = MAX_LIMIT) -> None:
        self.features: list[dict[str, Any]] = list(week())
        self.search_limit = search_limit
        self.paged_past_limit = False
        self.failure: tuple[int, str] | None = None
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, body, kind, logged = server.answer(parts.path, parts.query)
                with server._lock:
                    server.requests.append(logged)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{BASE}"

    # -- what a test changes ---------------------------------------------------------------------
    def revise(self, event_id: str, **properties: Any) -> dict[str, Any]:
        """Replace one event by a revision with these properties changed; returns it."""
        for i, feature in enumerate(self.features):
            if feature["id"] == event_id:
                revised = {**feature, "properties": {**feature["properties"], **properties}}
                self.features[i] = revised
                return revised
        raise KeyError(event_id)

    def fail(self, status: int, reason: str) -> None:
        """Answer every request with this plain-text error from now on."""
        self.failure = (status, reason)

    def queries(self) -> list[Logged]:
        with self._lock:
            return [r for r in self.requests if r.path == "query"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- answering -------------------------------------------------------------------------------
    def answer(self, path: str, query: str) -> tuple[int, bytes, str, Logged]:
        method = path.removeprefix(BASE + "/") if path.startswith(BASE + "/") else path
        params: dict[str, str] = {}
        try:
            params = self._params(query)
            if self.failure:
                raise Refusal(*self.failure)
            if method == "query":
                return self._query(params)
            if method == "count":
                return self._count(params)
            raise Refusal(404, f"No method {path}.")
        except Refusal as refusal:
            text = self._error_text(refusal, path, query)
            return (
                refusal.status,
                text.encode(),
                "text/plain",
                Logged(method, params, refusal.status, body=text),
            )

    def _params(self, query: str) -> dict[str, str]:
        raw = parse_qs(query, keep_blank_values=True)
        for name, values in raw.items():
            if name not in PARAMETERS:
                raise Refusal(400, f"Unknown parameter '{name}'.")
            if len(values) > 1:
                raise Refusal(400, f"Parameter '{name}' given more than once.")
        params = {name: values[0] for name, values in raw.items()}
        if params.get("format", "quakeml") not in FORMATS:
            raise Refusal(400, f'Bad format value "{params["format"]}" (this stand-in: geojson).')
        return params

    def _matching(self, params: dict[str, str]) -> list[dict[str, Any]]:
        now = dt.datetime.now(dt.UTC)
        start = (
            parse_time("starttime", params["starttime"])
            if "starttime" in params
            else epoch_ms(now - dt.timedelta(days=30))
        )
        end = parse_time("endtime", params["endtime"]) if "endtime" in params else None
        after = (
            parse_time("updatedafter", params["updatedafter"]) if "updatedafter" in params else None
        )
        order = params.get("orderby", "time")
        if order not in ORDERS:
            raise Refusal(400, f'Bad orderby value "{order}".')
        key, newest_first = ORDERS[order]
        found = [
            f
            for f in self.features
            if f["properties"]["time"] >= start
            and (end is None or f["properties"]["time"] <= end)
            and (after is None or f["properties"]["updated"] > after)
        ]
        return sorted(found, key=key, reverse=newest_first)

    def _query(self, params: dict[str, str]) -> tuple[int, bytes, str, Logged]:
        limit = _whole(params, "limit", 1, MAX_LIMIT)
        offset = _whole(params, "offset", 1, None) or 1
        nodata = params.get("nodata", "204")
        if nodata not in ("204", "404"):
            raise Refusal(400, f'Bad nodata value "{nodata}".')
        found = self._matching(params)
        if len(found) > self.search_limit and not (self.paged_past_limit and limit):
            raise Refusal(
                400,
                f"{len(found)} matching events exceeds search limit of {self.search_limit}."
                " Modify the search to match fewer events.",
            )
        page = found[offset - 1 :][:limit] if limit else found[offset - 1 :]
        if not page:
            if nodata == "404":
                raise Refusal(404, "No data matches the request.")
            return 204, b"", "text/plain", Logged("query", params, 204)
        if params.get("format", "quakeml") != "geojson":  # the service's default
            body = quakeml(page).encode()
            return 200, body, "application/xml", Logged("query", params, 200, len(page))
        document = {
            "type": "FeatureCollection",
            "metadata": {"status": 200, "count": len(page), "api": "1.0.13"},
            "features": page,
        }
        body = json.dumps(document).encode()
        return 200, body, "application/json", Logged("query", params, 200, len(page))

    def _count(self, params: dict[str, str]) -> tuple[int, bytes, str, Logged]:
        found = self._matching(params)
        logged = Logged("count", params, 200, len(found))
        if "format" not in params:
            return 200, str(len(found)).encode(), "text/plain", logged
        body = json.dumps({"count": len(found), "maxAllowed": self.search_limit}).encode()
        return 200, body, "application/json", logged

    @staticmethod
    def _error_text(refusal: Refusal, path: str, query: str) -> str:
        reason = REASONS.get(refusal.status, "Error")
        submitted = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return (
            f"Error {refusal.status}: {reason}\n\n{refusal.reason}\n\n"
            f"Usage details are available from https://earthquake.usgs.gov{BASE}\n\n"
            f"Request:\n{path}?{query}\n\nRequest Submitted:\n{submitted}\n\n"
            "Service version:\n1.13.1 (stand-in)\n"
        )


def quakeml(features: list[dict[str, Any]]) -> str:
    """Events as the service's default answer gives them: QuakeML 1.2 (the elements a client
    would meet first; enough that a JSON reader fails on it as it fails on the real one)."""
    events = "".join(
        f'<event publicID="quakeml:earthquake.usgs.gov/fdsnws/event/1/query?eventid={f["id"]}">'
        f"<origin><time><value>{iso_ms(f['properties']['time'])}</value></time></origin>"
        "</event>"
        for f in features
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<q:quakeml xmlns="http://quakeml.org/xmlns/bed/1.2"'
        ' xmlns:q="http://quakeml.org/xmlns/quakeml/1.2">'
        f'<eventParameters publicID="quakeml:earthquake.usgs.gov/fdsnws/event/1/query">{events}'
        "</eventParameters></q:quakeml>"
    )


def iso_ms(epoch_ms_value: int) -> str:
    moment = dt.datetime.fromtimestamp(epoch_ms_value / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _whole(params: dict[str, str], name: str, low: int, high: int | None) -> int | None:
    if name not in params:
        return None
    text = params[name]
    value = int(text) if text.isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"{low} <= {name} <= {high}" if high else f"{name} >= {low}"
        raise Refusal(400, f'Bad {name} value "{text}". Valid values are {bound}.')
    return value
