"""Real faults for resilience tests: a network that swallows bytes, a Platform API that rotates
credentials or goes down, and a PostgreSQL primary that fails over to its streaming replica.

Nothing here is mocked: the proxy is a TCP middlebox on 127.0.0.1, the API is an HTTP server,
the replica is a second PostgreSQL server. Tests drive the faults and assert what the worker does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.conftest import make_home
from tests.support import wait_for
from worker.database.embedded import Cluster

# -- network ---------------------------------------------------------------------------------


class _Link:
    """One accepted client and its upstream. Once `dead`, bytes are read and dropped for good."""

    def __init__(self, client: socket.socket, target: tuple[str, int], dead: bool) -> None:
        self.client = client
        self.target = target
        self.upstream: socket.socket | None = None
        self.dead = dead
        self.closed = False
        self._lock = threading.Lock()

    def attach(self, upstream: socket.socket) -> bool:
        """Keep `upstream` unless the link was closed while it was connecting."""
        with self._lock:
            if not self.closed:
                self.upstream = upstream
                return True
        _close(upstream)
        return False

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        _close(self.client)
        if self.upstream is not None:
            _close(self.upstream)


def _close(sock: socket.socket) -> None:
    # shutdown first: it wakes a thread blocked in recv() on this socket, close() alone does not
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class TcpProxy:
    """A TCP middlebox on 127.0.0.1:`port` in front of `target_host:target_port`.

    `blackhole()` models a network that loses packets while the proxy's kernel still ACKs them:
    libpq's keepalives and tcp_user_timeout cannot see that, only a client-side deadline can.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.connections = 0  # accepted since start, for assertions
        self.dropped = 0  # bytes swallowed by the blackhole
        self._blackholed = False
        self._closing = False
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    # -- faults --------------------------------------------------------------------------------
    def blackhole(self) -> None:
        """Stop forwarding on every open and every new connection; close nothing."""
        with self._lock:
            self._blackholed = True
            for link in self._links:
                link.dead = True

    def restore(self) -> None:
        """Forward again for new connections; blackholed ones stay dead, as they would."""
        with self._lock:
            self._blackholed = False

    def retarget(self, port: int, host: str = "127.0.0.1") -> None:
        """Send new connections to another server (the promoted replica after a failover)."""
        with self._lock:
            self.target = (host, port)

    def drop_all(self) -> None:
        """Close both sides of every open connection (each peer sees EOF)."""
        with self._lock:
            links = list(self._links)
        for link in links:
            self._forget(link)

    def close(self) -> None:
        """Stop listening, drop every connection and wait (bounded) for the threads to end."""
        with self._lock:
            self._closing = True
        _close(self._listener)  # wakes accept() with EINVAL on Linux
        self.drop_all()
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(
            target=target, args=args, daemon=True, name=f"tcpproxy-{self.port}"
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _forget(self, link: _Link) -> None:
        link.close()
        with self._lock:
            self._links.discard(link)

    def _accept(self) -> None:
        while True:  # ends when close() shuts the listener
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closing:
                    _close(client)
                    return
                self.connections += 1
                link = _Link(client, self.target, dead=self._blackholed)
                self._links.add(link)
            self._spawn(self._serve, link)

    def _serve(self, link: _Link) -> None:
        if link.dead:  # born in a blackhole: nothing ever reaches the server
            self._pump(link, link.client, None)
            return
        try:
            upstream = socket.create_connection(link.target, timeout=5)
        except OSError:
            self._forget(link)  # refused upstream: the client sees the connection close
            return
        upstream.settimeout(None)
        if link.attach(upstream):
            self._spawn(self._pump, link, upstream, link.client)
            self._pump(link, link.client, upstream)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):  # ends at EOF or when the socket is closed
                if link.dead or sink is None:
                    with self._lock:
                        self.dropped += len(data)
                else:
                    sink.sendall(data)
        except OSError:
            pass
        # A blackhole loses the FIN too: the other side must not hear that this one went away.
        if not link.dead:
            self._forget(link)


# -- Heroku Platform API ---------------------------------------------------------------------

_FAILURES = {
    429: ("rate_limit", "Your account reached the API rate limit. Please wait a few minutes."),
    500: ("internal_server_error", "Internal server error."),
    503: ("unavailable", "The API is temporarily unavailable. Please try again later."),
}
_NO_VERSION = (
    "Please specify a version along with Heroku's API MIME type."
    " For example, `Accept: application/vnd.heroku+json; version=3`."
)
_CONFIG_VARS = re.compile(r"/apps/(?P<app>[^/]+)/config-vars")


def _accepts_v3(accept: str) -> bool:
    media, *params = (part.strip().lower() for part in accept.split(";"))
    version = dict(p.partition("=")[::2] for p in params).get("version", "")
    return media == "application/vnd.heroku+json" and (version == "3" or version.startswith("3."))


class HerokuApi:
    """A local stand-in for `GET /apps/{app}/config-vars` of api.heroku.com.

    Answers like the real API (flat JSON object of strings; 400/401/404 with Heroku's error
    shape), so a test can rotate DATABASE_URL with `set()` or take the API down with `fail()`.
    It counts what it is asked (`requests`, and `arrivals`: when, on time.monotonic()), can
    answer 429 with a Retry-After, and can keep answers waiting (`hold()`, `release()`).
    """

    def __init__(self, config: dict[str, str], token: str, app: str = "nightshift") -> None:
        self.config = dict(config)
        self.token = token
        self.app = app
        self.requests = 0
        self.arrivals: list[float] = []  # time.monotonic() of each request, in order
        self.requested = threading.Event()  # set by each request
        self._failure: int | None = None
        self._retry_after: str | None = None
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = api._answer(
                    self.path, self.headers.get("Accept", ""), self.headers.get("Authorization")
                )
                api._open.wait(30)
                payload = json.dumps(body).encode()
                self.send_response(status)
                if status == 429 and api._retry_after is not None:
                    self.send_header("Retry-After", api._retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name="heroku-api"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def set(self, name: str, value: str) -> None:
        """Change a config var, as `heroku pg:credentials:rotate` or a failover does."""
        with self._lock:
            self.config[name] = value

    def fail(self, status: int, retry_after: str | None = None) -> None:
        """Answer every request with `status` (e.g. 503, 429) until `heal()`; a 429 carries
        `retry_after` (delta-seconds or an HTTP-date) as its Retry-After header, if given."""
        with self._lock:
            self._failure = status
            self._retry_after = retry_after

    def heal(self) -> None:
        with self._lock:
            self._failure = None

    def hold(self) -> None:
        """Keep answers waiting (inside the server, already counted) until `release()`."""
        self.requested.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, path: str, accept: str, authorization: str | None) -> tuple[int, Any]:
        with self._lock:
            self.requests += 1
            self.arrivals.append(time.monotonic())
            failure, config = self._failure, dict(self.config)
        self.requested.set()
        if failure is not None:
            error, message = _FAILURES.get(failure, ("error", "Something went wrong."))
            return failure, {"id": error, "message": message}
        if not _accepts_v3(accept):
            return 400, {"id": "missing_version", "message": _NO_VERSION}
        if authorization != f"Bearer {self.token}":
            return 401, {"id": "unauthorized", "message": "Invalid credentials provided."}
        match = _CONFIG_VARS.fullmatch(path.split("?", 1)[0])
        if match is None:
            return 404, {"id": "not_found", "message": "The requested API endpoint was not found."}
        if match["app"] != self.app:
            return 404, {"id": "not_found", "message": "Couldn't find that app."}
        return 200, config


# -- replication and failover ----------------------------------------------------------------

# Cluster.start sets these itself; everything else the primary got on its command line
# (fsync, ssl, certificate paths, test settings) the replica gets too.
_OWN_SETTINGS = {"port", "listen_addresses", "unix_socket_directories"}


def make_replica(primary: Cluster, home: Path | None = None, timeout: float = 30) -> Cluster:
    """A streaming replica of `primary` (pg_basebackup -R), started and caught up.

    pg_basebackup copies pg_hba.conf and the certificate files of the primary's data
    directory; settings given on the primary's command line are repeated, with paths into the
    primary's data directory pointed at the replica's copies.
    """
    replica = Cluster(home or make_home("nightshift-replica-"))
    if os.geteuid() == 0:
        shutil.chown(replica.home, "postgres", "postgres")
    try:
        replica._pg(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        rows = primary.psql("SELECT name, setting FROM pg_settings WHERE source = 'command line'")
        settings = dict(line.split("|", 1) for line in rows.splitlines() if line)
        replica.start(
            *(
                f"-c {name}={value.replace(str(primary.data), str(replica.data))}"
                for name, value in settings.items()
                if name not in _OWN_SETTINGS
            )
        )
        wait_for(
            lambda: replica.psql("SELECT status FROM pg_stat_wal_receiver").strip() == "streaming",
            timeout,
            "the replica to stream",
        )
        catch_up(primary, replica, timeout)
    except BaseException:
        discard(replica)
        raise
    return replica


def catch_up(primary: Cluster, replica: Cluster, timeout: float = 30) -> None:
    """Wait until the replica has replayed everything the primary has flushed so far."""
    lsn = primary.psql("SELECT pg_current_wal_flush_lsn()").strip()
    wait_for(
        lambda: replica.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'").strip() == "t",
        timeout,
        f"the replica to replay up to {lsn}",
    )


def promote(replica: Cluster, timeout: float = 30) -> None:
    """Make the replica a primary (what Heroku's HA failover does) and wait until it writes."""
    replica._pg("pg_ctl", "-D", str(replica.data), "-w", "-t", str(int(timeout)), "promote")
    wait_for(
        lambda: replica.psql("SELECT pg_is_in_recovery()").strip() == "f",
        timeout,
        "the promoted replica to leave recovery",
    )


def discard(cluster: Cluster) -> None:
    """Stop the server at once and delete its home: for finalisers."""
    cluster.stop("immediate")
    shutil.rmtree(cluster.home, ignore_errors=True)
