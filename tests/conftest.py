"""Real components for every test: a PostgreSQL server, a feed server, the real CLI.

- `pg`: one throwaway cluster per session, from the machine's binaries (as the postgres OS
  user when root), password-checked for everyone but its superuser.
- `db`: a fresh database per test, reached as an app role with a distinctive password.
- `feed`: a real local HTTP server answering like the USGS feed.
- `cli`: `python -m worker …` in a subprocess; every call asserts no secret was printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from hypothesis import HealthCheck, settings

from tests.support import FeedServer, LogTail, Result, WebhookServer, load_fixture, wait_for
from worker.database.embedded import Cluster

ROOT = Path(__file__).resolve().parent.parent

# Hostile inputs (hypothesis): bounded, so the suite stays short; a real database makes some
# examples slow, so no per-example deadline. In CI the examples are the same every run (what
# passed here passes there); locally each run explores new ones. `.hypothesis/` is git-ignored.
settings.register_profile(
    "nightshift",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("nightshift")
PASSWORD = "Tr0ub4dor-n1ghtsh1ft-S3CRET"  # distinctive: any occurrence in output is a leak
APP_USER = "nightshift_app"

HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def make_home(prefix: str) -> Path:
    """A directory the postgres OS user can use (not under /root or pytest's tmp_path)."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(home, 0o755)
    return home


def start_cluster(home: Path, **settings: str) -> Cluster:
    """A cluster with SSL on (as Heroku's), password auth for all but postgres, fsync off."""
    cluster = Cluster(home)
    cluster.init()
    (cluster.data / "pg_hba.conf").write_text(HBA)
    cert, key = self_signed_certificate(cluster.data)
    settings = {"fsync": "off", "ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key, **settings}
    cluster.options = [f"-c {k}={v}" for k, v in settings.items()]  # type: ignore[attr-defined]
    cluster.start(*cluster.options)  # type: ignore[attr-defined]
    return cluster


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    if os.geteuid() == 0:
        for path in (cert, key):
            shutil.chown(path, "postgres", "postgres")
    return str(cert), str(key)


@pytest.fixture(autouse=True)
def _wait_callback_removed_after_each_test() -> Iterator[None]:
    """A test that runs the engine in this process (a Flask test client, a Run) installs
    psycopg2's wait callback, process-wide (worker.database.deadline). Left behind, it would
    take libpq's own connect_timeout away from a later test's plain connection, which then
    waits on a blackholed proxy until pytest-timeout ends it."""
    yield
    psycopg2.extensions.set_wait_callback(None)


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    home = make_home("nightshift-test-")
    cluster = start_cluster(home)
    cluster.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


class Database:
    """A test database: its URL (as the app role) and a superuser connection for checks."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.url = f"postgresql://{APP_USER}:{PASSWORD}@127.0.0.1:{cluster.port}/{name}"
        self._conn = self._connect()

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=self.name
        )
        conn.autocommit = True
        return conn

    def query(self, sql: str, args: object = None) -> list[tuple]:
        """As superuser; a connection lost to a server restart is made again."""
        for attempt in (1, 2):
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall() if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 2:
                    raise
                self._conn.close()
                self._conn = self._connect()
        raise AssertionError("unreachable")

    def scalar(self, sql: str, args: object = None) -> object:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def runs(self) -> list[dict]:
        rows = self.query(
            "SELECT id, job, trigger, status, rows, changed, batches, error"
            " FROM nightshift.runs ORDER BY id"
        )
        keys = ("id", "job", "trigger", "status", "rows", "changed", "batches", "error")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def state(self, job: str) -> dict:
        return self.scalar("SELECT state FROM nightshift.job_state WHERE job = %s", (job,)) or {}

    def cursor(self, job: str, scope: str) -> str | None:
        """The job's saved cursor for the source `scope` (e.g. the feed's URL)."""
        return self.state(job).get("cursors", {}).get(scope)

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def db(pg: Cluster) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.psql(f'CREATE DATABASE "{name}" OWNER {APP_USER}')
    database = Database(pg, name)
    try:
        yield database
    finally:
        database.close()
        pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    server = FeedServer(load_fixture())
    try:
        yield server
    finally:
        server.close()


class Cli:
    """Runs the real CLI against a test database and feed, checking every output for leaks."""

    def __init__(self, db: Database, feed: FeedServer) -> None:
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": db.url,
            "USGS_FEED_URL": feed.url,
            # Never the real FDSN service: a closed port on loopback, and no schedule.
            "USGS_FDSN_URL": "http://127.0.0.1:9/fdsnws/event/1",
            "EARTHQUAKES_HISTORY_SCHEDULE": "off",
            "LOG_FORMAT": "json",
            "DYNO": "test.1",
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "worker", *args]

    def __call__(self, *args: str, timeout: float = 60, **env: str) -> Result:
        completed = subprocess.run(
            self.command(*args),
            env={**self.env, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = Result(completed.returncode, completed.stdout, completed.stderr)
        url = env.get("DATABASE_URL", self.env["DATABASE_URL"])
        assert_no_secrets(result.stdout + result.stderr, url)
        return result

    def assert_clean(self, output: str) -> None:
        """No secret of the test database in `output` (of a process `spawn` started)."""
        assert_no_secrets(output, self.env["DATABASE_URL"])

    def spawn(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args),
            env={**self.env, **env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )


def assert_no_secrets(output: str, url: str | None = None) -> None:
    assert PASSWORD not in output, "the database password leaked into output"
    if url:
        assert url not in output, "the full database URL leaked into output"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture
def cli(db: Database, feed: FeedServer) -> Cli:
    return Cli(db, feed)


@pytest.fixture
def workers(cli: Cli) -> Iterator:
    """Start `python -m worker` processes: `workers(**env) -> (process, LogTail)`. At the end
    the ones still running are stopped (SIGTERM, then SIGKILL) and their output is checked."""
    started: list[tuple[subprocess.Popen, LogTail]] = []

    def start(**env: str) -> tuple[subprocess.Popen, LogTail]:
        process = cli.spawn(**env)
        tail = LogTail(process.stdout)
        started.append((process, tail))
        return process, tail

    yield start
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, tail in started:
        try:
            process.wait(timeout=25)
        finally:
            process.kill()
        assert_no_secrets(tail.text() + process.stderr.read(), cli.env["DATABASE_URL"])


def log_lines(text: str) -> list[dict]:
    """Every line of a JSON log stream, parsed; a line that is not JSON fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Gate:
    """Makes the load stop in front of a batch: once the table holds `after` rows, the next
    INSERT waits on an advisory lock this test holds. Deterministic, no timing. Several
    thresholds make several stops, opened one by one with `open(stage)`."""

    KEY = 4242

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn = psycopg2.connect(
            host="127.0.0.1", port=db.cluster.port, user="postgres", dbname=db.name
        )
        self.conn.autocommit = True

    def install(self, table: str = "earthquakes", after: int | list[int] = 0) -> None:
        stages = [after] if isinstance(after, int) else after
        checks = "\n".join(
            f"IF n >= {rows} THEN PERFORM pg_advisory_lock_shared({self.KEY + i});"
            f" PERFORM pg_advisory_unlock_shared({self.KEY + i}); END IF;"
            for i, rows in enumerate(stages)
        )
        with self.conn.cursor() as cur:
            for i in range(len(stages)):
                cur.execute("SELECT pg_advisory_lock(%s)", (self.KEY + i,))
            cur.execute(
                f"""
                CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE n bigint;
                BEGIN
                  SELECT count(*) INTO n FROM {table};
                  {checks}
                  RETURN NULL;
                END $$;
                CREATE TRIGGER gate BEFORE INSERT ON {table}
                  FOR EACH STATEMENT EXECUTE FUNCTION gate();
                """
            )

    def waiting(self) -> list[int]:
        """The worker sessions blocked at the gate (empty while none is)."""
        rows = self.db.query(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name LIKE 'nightshift:%%'"
        )
        return [row[0] for row in rows]

    def kill_while_waiting(
        self, process: subprocess.Popen, then: Callable[[], object] | None = None
    ) -> None:
        """SIGKILL `process` while its batch waits here (and once `then()` holds), open the
        gate, and wait until the server has ended the dead process's session (a batch the
        server held commits whole: it is one statement)."""
        try:
            [session] = wait_for(self.waiting, what="a batch to wait at the gate")
            if then is not None:
                wait_for(then, what="the load to go on while a batch waits")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            process.kill()
            self.open()
        wait_for(
            lambda: not self.db.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (session,)),
            what="the dead process's session to end",
        )

    def open(self, stage: int | None = None) -> None:
        """Let the load through every stop, or through stop number `stage` (from 0)."""
        if self.conn.closed:
            return  # its server went away, and the locks with it
        with self.conn.cursor() as cur:
            if stage is None:
                cur.execute("SELECT pg_advisory_unlock_all()")
            else:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.KEY + stage,))

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def gate(db: Database) -> Iterator[Gate]:
    g = Gate(db)
    try:
        yield g
    finally:
        g.close()
