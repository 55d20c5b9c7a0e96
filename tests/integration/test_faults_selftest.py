"""The fault injectors in tests/faults.py do what resilience tests will rely on."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
import requests

from tests.conftest import make_home, start_cluster
from tests.faults import HerokuApi, TcpProxy, catch_up, discard, make_replica, promote
from tests.support import wait_for
from worker.database.embedded import Cluster

# Options that bound every kernel-level network fault to seconds (postgres-faults.md).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 1,
    "tcp_user_timeout": 1000,
}


def connect(port: int, **options: object) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", **options
    )
    conn.autocommit = True
    return conn


def scalar(conn: psycopg2.extensions.connection, sql: str) -> object:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


class Echo(socketserver.ThreadingTCPServer):
    """A TCP echo server that keeps every byte it received."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received = b""
        echo = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(65536):
                    echo.received += data
                    self.request.sendall(data)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(pg: Cluster) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", pg.port) as p:
        yield p


# -- TcpProxy --------------------------------------------------------------------------------


def test_proxy_forwards_a_postgres_session(proxy):
    conn = connect(proxy.port, sslmode="disable")

    assert scalar(conn, "SELECT 1") == 1
    assert proxy.connections == 1
    conn.close()


def test_blackholed_query_hangs_despite_keepalives_until_the_proxy_drops_it(proxy):
    conn = connect(proxy.port, sslmode="disable", **KEEPALIVES)
    assert scalar(conn, "SELECT 1") == 1
    outcome: list[BaseException | object] = []

    def query() -> None:
        try:
            outcome.append(scalar(conn, "SELECT 2"))
        except BaseException as error:
            outcome.append(error)

    proxy.blackhole()
    thread = threading.Thread(target=query, daemon=True)
    thread.start()
    thread.join(timeout=2)  # the answer takes milliseconds; keepalives would fire in ~2 s
    assert thread.is_alive(), f"the query finished through a blackhole: {outcome}"

    proxy.drop_all()
    wait_for(lambda: not thread.is_alive(), 10, "the query to fail")
    [error] = outcome
    assert isinstance(error, psycopg2.OperationalError)
    assert error.pgcode is None
    assert "server closed the connection unexpectedly" in str(error)
    assert conn.closed == 2

    proxy.restore()
    fresh = connect(proxy.port, sslmode="disable")
    assert scalar(fresh, "SELECT 3") == 3
    fresh.close()


def test_new_connection_into_a_blackhole_fails_by_connect_timeout(proxy):
    proxy.blackhole()
    started = time.monotonic()

    with pytest.raises(psycopg2.OperationalError) as failure:
        connect(proxy.port, sslmode="disable", connect_timeout=2)

    assert 1.5 < time.monotonic() - started < 5
    assert "timeout expired" in str(failure.value)
    assert proxy.connections == 1  # accepted by the proxy, never answered


def test_blackhole_drops_bytes_instead_of_replaying_them(echo):
    with TcpProxy("127.0.0.1", echo.server_address[1]) as proxy:
        old = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        old.sendall(b"before")
        assert old.recv(100) == b"before"

        proxy.blackhole()
        old.sendall(b"lost")
        wait_for(lambda: proxy.dropped == 4, 5, "the proxy to swallow 4 bytes")
        proxy.restore()
        new = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        new.sendall(b"after")

        assert new.recv(100) == b"after"
        assert echo.received == b"beforeafter"
        old.close()
        new.close()


def test_proxy_retargets_new_connections(echo, pg):
    with TcpProxy("127.0.0.1", pg.port) as proxy:
        proxy.retarget(echo.server_address[1])
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping"


def test_proxy_close_is_prompt_and_ends_its_threads(echo):
    proxy = TcpProxy("127.0.0.1", echo.server_address[1])
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    live.sendall(b"x")
    assert live.recv(10) == b"x"
    proxy.blackhole()
    dead = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    wait_for(lambda: proxy.connections == 2, 5, "the second connection")

    started = time.monotonic()
    proxy.close()

    assert time.monotonic() - started < 1
    assert not [t for t in threading.enumerate() if t.name == f"tcpproxy-{proxy.port}"]
    assert live.recv(10) == b""  # EOF: the proxy closed its side
    live.close()
    dead.close()


# -- HerokuApi -------------------------------------------------------------------------------

TOKEN = "HRKU-test-token-0000"
HEADERS = {"Accept": "application/vnd.heroku+json; version=3", "Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def heroku() -> Iterator[HerokuApi]:
    with HerokuApi({"DATABASE_URL": "postgres://u:p@db1:5432/d"}, TOKEN, app="nightshift") as api:
        yield api


def config_vars(api: HerokuApi, app: str = "nightshift", **headers: str) -> requests.Response:
    return requests.get(
        f"{api.url}/apps/{app}/config-vars", headers={**HEADERS, **headers}, timeout=5
    )


def test_heroku_api_answers_config_vars_as_a_flat_object(heroku):
    response = config_vars(heroku)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"DATABASE_URL": "postgres://u:p@db1:5432/d"}


def test_heroku_api_serves_a_rotated_url(heroku):
    heroku.set("DATABASE_URL", "postgres://u2:p2@db2:5432/d")

    assert config_vars(heroku).json() == {"DATABASE_URL": "postgres://u2:p2@db2:5432/d"}


@pytest.mark.parametrize(
    ("headers", "app", "status", "body"),
    [
        (
            {"Authorization": "Bearer wrong"},
            "nightshift",
            401,
            {"id": "unauthorized", "message": "Invalid credentials provided."},
        ),
        (
            {"Authorization": ""},
            "nightshift",
            401,
            {"id": "unauthorized", "message": "Invalid credentials provided."},
        ),
        ({}, "other-app", 404, {"id": "not_found", "message": "Couldn't find that app."}),
    ],
)
def test_heroku_api_refuses_like_the_real_one(heroku, headers, app, status, body):
    response = config_vars(heroku, app, **headers)

    assert (response.status_code, response.json()) == (status, body)


def test_heroku_api_requires_the_version_in_accept(heroku):
    response = config_vars(heroku, Accept="application/json")

    assert response.status_code == 400
    assert response.json()["id"] == "missing_version"


def test_heroku_api_fails_until_healed_and_counts_requests(heroku):
    heroku.fail(503)
    down = config_vars(heroku)
    heroku.heal()
    up = config_vars(heroku)

    assert down.status_code == 503
    assert down.json()["id"] == "unavailable"
    assert up.status_code == 200
    assert heroku.requests == 2


# -- replication and failover ----------------------------------------------------------------


@pytest.fixture
def scratch() -> Iterator[Callable[[str], Path]]:
    """Homes for clusters this test starts; each is stopped and deleted afterwards."""
    homes: list[Path] = []

    def new(prefix: str) -> Path:
        homes.append(make_home(prefix))
        return homes[-1]

    try:
        yield new
    finally:
        for home in reversed(homes):
            discard(Cluster(home))


def test_replica_follows_then_takes_over_after_failover(scratch):
    primary = start_cluster(scratch("nightshift-primary-"))
    primary.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    replica = make_replica(primary, scratch("nightshift-replica-"))
    proxy = TcpProxy("127.0.0.1", primary.port)
    try:
        before = connect(proxy.port)
        standby = connect(replica.port)
        scalar(before, "INSERT INTO t VALUES (2) RETURNING id")
        catch_up(primary, replica)

        assert scalar(standby, "SELECT array_agg(id ORDER BY id) FROM t") == [1, 2]
        assert scalar(standby, "SELECT pg_is_in_recovery()") is True
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            scalar(standby, "INSERT INTO t VALUES (3) RETURNING id")
        assert scalar(standby, "SELECT 1") == 1  # the standby session survives the refusal

        primary.stop("immediate")
        promote(replica)
        proxy.retarget(replica.port)

        with pytest.raises(psycopg2.OperationalError):
            scalar(before, "SELECT 1")
        after = connect(proxy.port)
        assert scalar(after, "INSERT INTO t VALUES (3) RETURNING id") == 3
        assert scalar(after, "SELECT count(*) FROM t") == 3
        assert scalar(after, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
        for conn in (before, standby, after):
            conn.close()
    finally:
        proxy.close()
