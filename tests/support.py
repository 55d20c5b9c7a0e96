"""Test helpers: a real HTTP feed server, synthetic feeds, CLI results, deadline polls."""

from __future__ import annotations

import copy
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

FIXTURE = Path(__file__).parent / "fixtures" / "usgs_all_day_2016-11-03.geojson"


def load_fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def synthetic_feed(count: int, start_ms: int = 1_478_000_000_000) -> dict[str, Any]:
    """A feed shaped like USGS's with `count` distinct events, `updated` all different."""
    template = load_fixture()["features"][0]
    features = []
    for i in range(count):
        feature = copy.deepcopy(template)
        feature["id"] = f"syn{i:06d}"
        feature["properties"].update(
            mag=round(-1 + (i % 70) / 10, 2),
            time=start_ms + i * 1000,
            updated=start_ms + i * 1000 + 500,
            place=f"{i} km N of Somewhere",
            code=f"{i:06d}",
        )
        features.append(feature)
    return {"type": "FeatureCollection", "metadata": {"count": count}, "features": features}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == name]


class FeedServer:
    """A real HTTP server on 127.0.0.1 that serves one document, or a scripted failure."""

    def __init__(self, document: Any) -> None:
        self.status = 200
        self.body = json.dumps(document).encode()
        self.declared_length: int | None = None  # a Content-Length that lies (truncation)
        self.requests = 0
        self.requested = threading.Event()
        self._open = threading.Event()
        self._open.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                server.requested.set()
                server._open.wait(60)
                body = server.body
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(server.declared_length or len(body)))
                self.end_headers()
                self.wfile.write(body)
                if server.declared_length:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/earthquakes/feed/v1.0/summary/all_day.geojson"

    def serve(self, document: Any) -> None:
        self.status, self.body, self.declared_length = 200, json.dumps(document).encode(), None

    def fail(self, status: int, body: bytes = b"{}") -> None:
        self.status, self.body = status, body

    def raw(self, body: bytes, declared_length: int | None = None) -> None:
        self.status, self.body, self.declared_length = 200, body, declared_length

    def hold(self) -> None:
        """Keep requests waiting (inside the server) until `release()`."""
        self.requested.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class LogTail:
    """Reads a child process's JSON log lines as they come, so a test can wait for an event."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = threading.Condition(threading.RLock())
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.raw.append(line)
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "<not json>", "line": line})
                self._changed.notify_all()

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._changed:
            return [line for line in self.lines if line.get("event") == name]

    def wait_event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        with self._changed:
            if not self._changed.wait_for(lambda: self.events(name), timeout):
                raise AssertionError(f"no {name!r} log line within {timeout}s: {self.raw[-5:]}")
            return self.events(name)[0]

    def text(self) -> str:
        self._thread.join(timeout=10)
        with self._changed:
            return "".join(self.raw)


class WebhookServer:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                server.received.append(json.loads(self.rfile.read(length)))
                server.arrived.set()
                self.send_response(server.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def origin(self) -> str:
        """Scheme, host and port: the server takes a POST on any path."""
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/services/T000/B000/s3cr3tPath"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Seen:
    """One request a StubServer received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived


# What a StubServer answers: a status, headers, and a body — bytes (sent with its length), or
# an iterable of bytes (each piece sent and flushed as it comes; the connection closes after).
Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]


class StubServer:
    """A real HTTP server on 127.0.0.1 whose every answer a test computes from the request:
    `answer(seen) -> (status, headers, body)`. Requests are recorded in `requests`."""

    def __init__(self, answer: Callable[[Seen], Answer]) -> None:
        self.answer = answer
        self.requests: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    dict(self.headers),
                    time.monotonic(),
                )
                server.requests.append(seen)
                status, headers, body = server.answer(seen)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if isinstance(body, bytes):
                        if "Content-Length" not in headers:
                            self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    self.close_connection = True
                    self.end_headers()
                    for piece in body:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up: often the test's point

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StatusPage:
    """The running status page: its URL, and how to ask it things as an operator would."""

    url: str
    password: str
    process: subprocess.Popen
    out: LogTail
    err: LogTail

    def get(self, path: str = "/", password: str | object | None = ..., **kw) -> requests.Response:
        """GET as an operator signed in with the page's password (`password=None`: anonymous)."""
        password = self.password if password is ... else password
        auth = ("nightshift", password) if password is not None else None
        return requests.get(self.url + path, auth=auth, timeout=10, allow_redirects=False, **kw)

    def output(self) -> str:
        return self.out.text() + self.err.text()


@contextmanager
def serving_status_page(cli: Any, password: str, **env: str) -> Iterator[StatusPage]:
    """`python -m worker web` (gunicorn) on a free loopback port, once it answers; stopped
    with SIGTERM after, which it must take with exit 0, its output free of secrets."""
    port = free_port()
    process = cli.spawn(
        "web", "--host", "127.0.0.1", PORT=str(port), STATUS_PASSWORD=password, **env
    )
    page = StatusPage(
        f"http://127.0.0.1:{port}", password, process, LogTail(process.stdout),
        LogTail(process.stderr),
    )  # fmt: skip

    def answering() -> bool:
        assert process.poll() is None, f"the status page exited: {page.output()[-2000:]}"
        try:
            return page.get(password=None).status_code == 401
        except requests.ConnectionError:
            return False

    try:
        wait_for(answering, timeout=30, what="the status page to answer")
        yield page
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=25) == 0
        finally:
            process.kill()
        output = page.output()
        cli.assert_clean(output)
        assert password not in output
