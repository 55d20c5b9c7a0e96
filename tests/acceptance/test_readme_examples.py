"""Every job in the README runs as written, against a local server answering like its API,
twice and more: so no README example can rot."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import ROOT
from tests.fdsn import FdsnServer

TOKEN = "shop-token-Distinctive-0451"


def readme_jobs() -> dict[str, str]:
    """The README's ```python blocks that start with `# jobs/NAME.py`, by NAME."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n# jobs/(\w+)\.py\n(.*?)```", text, flags=re.DOTALL)
    return dict(blocks)


@dataclass
class Raw:
    """An answer as bytes, with its headers."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """A real HTTP server: each path answers what is set for it — a JSON document, a `Raw`
    answer, or a function of the query giving one; requests recorded."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                api.requests.append(
                    {
                        "path": parts.path,
                        "query": parse_qs(parts.query),
                        "headers": dict(self.headers),
                    }
                )
                answer = api.documents.get(parts.path, {})
                if callable(answer):
                    answer = answer(parse_qs(parts.query))
                if not isinstance(answer, Raw):
                    answer = Raw(json.dumps(answer).encode(), {"Content-Type": "application/json"})
                self.send_response(200 if parts.path in api.documents else 404)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def readme(tmp_path: Path, cli) -> Iterator[tuple[Any, Api]]:
    """The README's jobs as a package of their own; `run(*args, **env)` runs the real CLI."""
    package = tmp_path / "readme_jobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in readme_jobs().items():
        (package / f"{name}.py").write_text(source)
    api = Api()
    env = {
        "JOBS_PACKAGE": "readme_jobs",
        "PYTHONPATH": f"{ROOT}:{tmp_path}",
        "RATES_URL": api.url("/rates"),
        "SHOP_URL": api.url("/api/orders?api_key=query-Secret-0451"),
        "SHOP_TOKEN": TOKEN,
        "STATIONS_CSV_URL": api.url("/stations.csv.gz"),
        "EVENTS_URL": api.url("/export.ndjson"),
    }

    def run(*args: str, **extra: str):
        result = cli(*args, **{**env, **extra})
        output = result.stdout + result.stderr
        assert TOKEN not in output and "query-Secret-0451" not in output
        return result

    yield run, api
    api.close()


def rates(*days: tuple[str, float]) -> dict[str, Any]:
    return {"days": [{"date": day, "rates": {"USD": rate, "CHF": rate / 2}} for day, rate in days]}


def test_the_readme_declares_the_jobs_this_file_runs():
    assert set(readme_jobs()) == {
        "exchange_rates",
        "orders",
        "quakes",
        "shop_orders",
        "stations",
        "events",
    }


def test_exchange_rates_runs_any_number_of_times_from_its_date_cursor(readme, db):
    run, api = readme
    api.documents["/rates"] = rates(("2024-01-01", 1.1), ("2024-01-02", 1.2))

    results = [run("run", "exchange_rates") for _ in range(3)]

    assert [r.returncode for r in results] == [0, 0, 0], results[-1].stderr
    assert db.scalar("SELECT count(*) FROM exchange_rates") == 4
    assert db.state("exchange_rates") == {"cursor": "2024-01-02"}
    sent = [r["query"]["since"] for r in api.requests]
    assert sent == [["2024-01-01"], ["2024-01-02"], ["2024-01-02"]]  # the cursor, as a date


def test_exchange_rates_backfills_a_window_without_moving_its_cursor(readme, db):
    run, api = readme
    api.documents["/rates"] = rates(("2024-03-01", 1.3))
    assert run("run", "exchange_rates").returncode == 0
    api.documents["/rates"] = rates(("2023-06-01", 1.0), ("2023-06-30", 1.05))

    window = run("run", "exchange_rates", "--since", "2023-06-01", "--until", "2023-06-30")

    assert window.returncode == 0, window.stderr
    assert api.requests[-1]["query"] == {"since": ["2023-06-01"], "until": ["2023-06-30"]}
    assert db.scalar("SELECT count(*) FROM exchange_rates") == 6
    assert db.state("exchange_rates") == {"cursor": "2024-03-01"}  # untouched by the window


def order(id_: int, total: Any, updated: str, status: str = "paid") -> dict[str, Any]:
    return {"id": id_, "status": status, "total": total, "updated_at": updated}


def test_orders_newer_wins_rejects_are_kept_and_replayed_and_the_token_never_shows(readme, db):
    run, api = readme
    path = "/api/orders"
    api.documents[path] = {
        "orders": [
            order(1, "10.50", "2024-05-01T10:00:00Z"),
            order(2, "n/a", "2024-05-01T11:00:00Z"),  # refused: not a number
            order(3, "7.25", "2024-05-01T12:00:00Z", status="shipped"),
        ]
    }

    first = run("run", "orders")

    assert first.returncode == 0, first.stderr
    [finished] = first.events("job_finished")
    assert (finished["status"], finished["rows"], finished["rejected"]) == ("succeeded", 2, 1)
    assert api.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    listed = json.loads(run("rejects", "orders", "--json").stdout)
    assert [(r["key"], r["row"]["total"]) for r in listed] == [({"id": 2}, "n/a")]
    assert listed[0]["error"].startswith("22P02 invalid input syntax for type numeric")
    [run_json] = json.loads(run("runs", "--json").stdout)
    assert run_json["rejected"] == 1

    # An older snapshot comes back: nothing goes back with it.
    api.documents[path] = {"orders": [order(3, "7.25", "2024-04-01T00:00:00Z", status="new")]}
    second = run("run", "orders")
    assert second.returncode == 0, second.stderr
    assert db.query("SELECT status FROM orders WHERE id = 3") == [("shipped",)]
    assert api.requests[-1]["query"]["updated_since"] == ["2024-05-01T12:00:00+00:00"]

    # The cause is fixed (the column takes text now): the reject loads, and leaves the list.
    db.query("ALTER TABLE orders ALTER COLUMN total TYPE text")
    replayed = run("rejects", "orders", "--replay")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "orders: 1 loaded, 0 superseded, 0 still refused"
    assert db.query("SELECT total FROM orders WHERE id = 2") == [("n/a",)]
    assert db.scalar("SELECT count(*) FROM nightshift.rejects") == 0


def test_orders_without_its_secret_fails_with_one_line_naming_it(readme, db):
    run, api = readme
    api.documents["/api/orders"] = {"orders": []}

    result = run("run", "orders", SHOP_TOKEN="")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: orders failed: job: MissingSecret: the environment has no SHOP_TOKEN (ctx.secret)"
    )


def test_the_readmes_dry_run_output_is_what_a_dry_run_prints(readme, db):
    run, api = readme
    api.documents["/api/orders"] = {
        "orders": [
            order(1, "10.50", "2024-05-01T10:00:00Z"),
            order(2, "n/a", "2024-05-01T11:00:00Z"),
            order(3, "7.25", "2024-05-01T12:00:00Z"),
        ]
    }
    text = (ROOT / "README.md").read_text()
    shown = text.split("**Debugging a new job: `--dry-run`.**", 1)[1].split("```\n", 2)[1]

    result = run("run", "orders", "--dry-run")

    assert result.returncode == 1  # a row would be refused
    assert result.stdout == shown
    assert db.query("SELECT to_regclass('orders')") == [(None,)]


def test_quakes_splits_refused_windows_and_pages_the_real_week_whole(readme, db):
    run, _ = readme
    fdsn = FdsnServer(search_limit=400)
    try:
        result = run(
            "run", "quakes", "--since", "2013-08-09", "--until", "2013-08-16",
            QUAKES_URL=fdsn.url + "/query",
        )  # fmt: skip
        statuses = [q.status for q in fdsn.queries()]
    finally:
        fdsn.close()

    assert result.returncode == 0, result.stderr
    assert db.scalar("SELECT count(*) FROM quakes") == len(fdsn.features) == 1718
    assert 400 in statuses  # windows were refused, and split
    assert statuses[-1] == 200


def test_quakes_fails_with_one_line_when_a_single_day_is_too_big(readme, db):
    run, _ = readme
    fdsn = FdsnServer(search_limit=100)
    try:
        result = run(
            "run", "quakes", "--since", "2013-08-15", "--until", "2013-08-15",
            QUAKES_URL=fdsn.url + "/query",
        )  # fmt: skip
    finally:
        fdsn.close()

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: quakes failed: source: ")
    assert "exceeds search limit of 100" in line


def test_shop_orders_walks_the_link_header_pages_with_its_token_twice(readme, db):
    run, api = readme
    pages = [
        [order(1, "1.00", "2024-05-01T10:00:00Z"), order(2, "2.00", "2024-05-01T10:01:00Z")],
        [order(3, "3.00", "2024-05-01T10:02:00Z"), order(4, "4.00", "2024-05-01T10:03:00Z")],
        [order(5, "5.00", "2024-05-01T10:04:00Z")],
    ]

    def page(query: dict) -> Raw:
        number = int(query.get("page", ["1"])[0])
        headers = {"Content-Type": "application/json"}
        if number < len(pages):
            headers["Link"] = f'<{api.url("/api/orders")}?page={number + 1}>; rel="next"'
        return Raw(json.dumps({"orders": pages[number - 1]}).encode(), headers)

    api.documents["/api/orders"] = page

    first = run("run", "shop_orders")
    second = run("run", "shop_orders")

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert db.scalar("SELECT count(*) FROM shop_orders") == 5
    asked = [r for r in api.requests if r["path"] == "/api/orders"]
    assert len(asked) == 6  # three pages, twice
    assert {r["headers"]["Authorization"] for r in asked} == {f"Bearer {TOKEN}"}
    assert asked[3]["query"]["updated_since"] == ["2024-05-01T10:04:00+00:00"]
    assert not db.state("shop_orders").get("pagination")  # a finished walk keeps no position
    [finished] = second.events("job_finished")
    assert (finished["rows"], finished["changed"]) == (5, 0)


def test_stations_reads_a_gzipped_latin1_csv_export_row_by_row(readme, db):
    run, api = readme
    text = "code;name;elevation;opened\nZRH;Zürich;408;1960-01-01\nGVA;Genève;;\n"
    api.documents["/stations.csv.gz"] = Raw(
        gzip.compress(text.encode("latin-1")), {"Content-Type": "text/csv"}
    )

    results = [run("run", "stations") for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], results[-1].stderr
    assert db.query("SELECT code, name, elevation_m, opened FROM stations ORDER BY code") == [
        ("GVA", "Genève", None, None),
        ("ZRH", "Zürich", 408.0, dt.date(1960, 1, 1)),
    ]


def test_events_streams_an_ndjson_export_and_asks_since_its_cursor(readme, db):
    run, api = readme
    lines = [
        {"id": "e1", "type": "login", "time": "2024-06-01T08:00:00Z"},
        {"id": "e2", "type": "logout", "time": "2024-06-01T09:00:00Z"},
        {"id": "e3", "type": "login", "time": "2024-06-01T10:00:00Z"},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    api.documents["/export.ndjson"] = Raw(body, {"Content-Type": "application/x-ndjson"})

    results = [run("run", "events") for _ in range(2)]

    assert [r.returncode for r in results] == [0, 0], results[-1].stderr
    assert db.query("SELECT id, kind FROM events ORDER BY id") == [
        ("e1", "login"),
        ("e2", "logout"),
        ("e3", "login"),
    ]
    asked = [r["query"] for r in api.requests if r["path"] == "/export.ndjson"]
    assert asked == [{}, {"since": ["2024-06-01T10:00:00+00:00"]}]
