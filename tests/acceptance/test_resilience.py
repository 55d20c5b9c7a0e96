"""Real faults mid-load: the run reconnects with a freshly resolved URL and loses nothing.

Each test pauses the load at a batch boundary with the gate (deterministic, no timing),
injects the fault while the worker's batch waits there, and asserts the exact final row set
and exit 0 (or, where the database never comes back, exit 1 with one clear line).
"""

from __future__ import annotations

import time

import psycopg2
import pytest

from tests.conftest import (
    APP_USER,
    PASSWORD,
    Database,
    Gate,
    assert_no_secrets,
)
from tests.faults import HerokuApi, TcpProxy, catch_up, discard, make_replica, promote
from tests.support import wait_for
from worker.database.classify import Action, classify

TOKEN = "HRKU-0123456789abcdef-api-token-distinctive"
NEW_PASSWORD = "Rotated-n1ghtshift-S3CRET-2"
ROWS, BATCH = 3000, "500"


def assert_exact_rows(db: Database, document: dict) -> None:
    ids = [row[0] for row in db.query("SELECT id FROM earthquakes ORDER BY id")]
    assert ids == sorted(f["id"] for f in document["features"])  # nothing lost, no duplicate
    mags = {f["id"]: f["properties"]["mag"] for f in document["features"]}
    assert dict(db.query("SELECT id, mag FROM earthquakes")) == mags


def wait_at_gate(gate: Gate, rows: int) -> int:
    """Wait until the worker's batch waits at the gate with `rows` committed; its pid."""

    def blocked() -> list[int]:
        count = gate.db.scalar("SELECT count(*) FROM earthquakes")
        return gate.waiting() if count == rows else []

    [pid] = wait_for(blocked, what=f"a batch waiting at the gate after {rows} rows")
    return pid


def migrate(cli, url: str) -> None:
    result = cli("migrate", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr


# -- the session dies ------------------------------------------------------------------------
def test_a_session_terminated_three_times_mid_load_is_replayed_each_time(cli, db, load, gate):
    migrate(cli, db.url)
    gate.install(after=[500, 1500, 2500])
    run = load()

    for stage, rows in enumerate([500, 1500, 2500]):
        pid = wait_at_gate(gate, rows)
        assert db.scalar(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,)
        ) == ("nightshift:earthquakes@test.1")
        db.query("SELECT pg_terminate_backend(%s)", (pid,))
        gate.open(stage)

    code, stderr = run.finish()
    assert code == 0, stderr
    assert_exact_rows(db, load.document)
    [finished] = run.tail.events("job_finished")
    assert (finished["status"], finished["reconnects"]) == ("succeeded", 3)
    assert db.runs()[-1]["batches"] == 6
    assert db.scalar("SELECT reconnects FROM nightshift.runs") == 3
    assert run.causes() == {"session_lost"}
    for retry in run.retries():
        assert retry["source"].startswith("environment DATABASE_URL (host=127.0.0.1 ")
        assert retry["attempt"] >= 1 and retry["wait_s"] > 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_server_stopped_and_started_mid_load_is_ridden_through(cli, own, load, mode):
    migrate(cli, own.url)
    gate = Gate(own)
    try:
        gate.install(after=1000)
        run = load(DATABASE_URL=own.url)
        wait_at_gate(gate, 1000)

        own.cluster.stop(mode)
        wait_for(lambda: "connection_refused" in run.causes(), what="a refused reconnect")
        own.cluster.start(*own.cluster.options)

        code, stderr = run.finish()
    finally:
        gate.close()
    assert code == 0, stderr
    assert_exact_rows(own, load.document)
    assert {"session_lost", "connection_refused"} <= run.causes()
    assert run.tail.events("job_finished")[0]["reconnects"] == 1


# -- the URL moves -----------------------------------------------------------------------------
@pytest.fixture
def api(db):
    with HerokuApi({"DATABASE_URL": db.url, "OTHER": "x"}, token=TOKEN, app="nightshift") as api:
        yield api


def api_env(api: HerokuApi, **more: str) -> dict[str, str]:
    return {
        "HEROKU_API_KEY": TOKEN,
        "HEROKU_APP_NAME": "nightshift",
        "HEROKU_API_URL": api.url,
        "DATABASE_URL": "",
        **more,
    }


@pytest.fixture
def rotation(pg):
    """Rotate the app role's password; put it back afterwards (the role is shared)."""

    def rotate(db: Database) -> None:
        db.query(f"ALTER ROLE {APP_USER} PASSWORD '{NEW_PASSWORD}'")
        db.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (APP_USER,)
        )

    yield rotate
    pg.psql(f"ALTER ROLE {APP_USER} PASSWORD '{PASSWORD}'")


def test_credential_rotation_mid_load_rides_on_the_new_url_from_the_platform_api(
    cli, db, load, gate, api, rotation
):
    migrate(cli, db.url)
    gate.install(after=1000)
    run = load(**api_env(api))
    wait_at_gate(gate, 1000)
    assert api.requests == 1  # resolved once at start, not per query

    rotation(db)
    gate.open()
    # Rotation takes a moment to reach the config var: the old URL keeps failing meanwhile.
    wait_for(lambda: len([r for r in run.retries() if r["cause"] == "auth_failed"]) >= 2)
    api.set("DATABASE_URL", db.url.replace(PASSWORD, NEW_PASSWORD))

    code, stderr = run.finish()
    assert code == 0, stderr
    assert_exact_rows(db, load.document)
    assert {"session_lost", "auth_failed"} <= run.causes()
    assert api.requests >= 3  # re-resolved after each error that can mean it moved
    for secret in (TOKEN, NEW_PASSWORD, PASSWORD, f'"{APP_USER}"'):
        assert secret not in run.output() + stderr
    source = run.retries()[-1]["source"]
    assert source.startswith("Heroku Platform API (nightshift DATABASE_URL) (host=127.0.0.1")


def test_a_rotation_whose_new_url_never_comes_fails_after_the_budget_naming_authentication(
    cli, db, load, gate, api, rotation
):
    migrate(cli, db.url)
    gate.install(after=1000)
    run = load(**api_env(api, DB_RETRY_TIMEOUT="3"))
    wait_at_gate(gate, 1000)

    rotation(db)
    gate.open()

    code, stderr = run.finish()
    assert code == 1
    [line] = stderr.strip().splitlines()
    assert line.startswith("error: earthquakes failed: database: gave up after 3 s and ")
    assert line.endswith('last cause auth_failed: password authentication failed for user "***"')
    assert db.scalar("SELECT count(*) FROM earthquakes") == 1000  # committed batches stay
    # The database refuses us, so the failure cannot be written there: the log says so, and
    # the next run of the job (its lock is free) marks this one abandoned.
    assert db.runs()[-1]["status"] == "running"
    assert run.tail.events("run_not_recorded")
    assert run.tail.events("job_finished")[0]["status"] == "failed"
    assert TOKEN not in run.output() + stderr


def test_ha_failover_mid_load_finishes_on_the_promoted_replica(cli, own, load):
    replica = make_replica(own.cluster)
    new_primary = Database(replica, "app")
    try:
        with HerokuApi({"DATABASE_URL": own.url}, token=TOKEN, app="nightshift") as api:
            migrate(cli, own.url)
            gate = Gate(own)
            gate.install(after=1000)
            run = load(**api_env(api))
            wait_at_gate(gate, 1000)
            catch_up(own.cluster, replica)  # what committed is on the replica too

            own.cluster.stop("immediate")
            promote(replica)
            api.set("DATABASE_URL", new_primary.url)

            code, stderr = run.finish()
            gate.close()
        assert code == 0, stderr
        assert_exact_rows(new_primary, load.document)
        assert run.tail.events("job_finished")[0]["reconnects"] == 1
        assert new_primary.runs()[-1]["status"] == "succeeded"
    finally:
        new_primary.close()
        discard(replica)


def test_pointed_at_a_hot_standby_it_re_resolves_to_the_primary(cli, own, load, tmp_path):
    replica = make_replica(own.cluster)
    standby = Database(replica, "app")
    try:
        migrate(cli, own.url)
        catch_up(own.cluster, replica)
        url_file = tmp_path / "database_url"
        url_file.write_text(standby.url + "\n")
        run = load(DATABASE_URL="", DATABASE_URL_FILE=str(url_file))

        wait_for(lambda: "read_only" in run.causes(), what="the standby to be refused")
        url_file.write_text(own.url)

        code, stderr = run.finish()
        assert code == 0, stderr
        assert_exact_rows(own, load.document)
        assert run.retries()[0]["source"].startswith(f"DATABASE_URL_FILE ({url_file})")
    finally:
        standby.close()
        discard(replica)


def test_a_write_refused_by_a_standby_means_resolve_again(own):
    replica = make_replica(own.cluster)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=replica.port, user="postgres", dbname="app")
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction) as refused, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int)")
        verdict = classify(refused.value, conn)
        conn.close()
        assert (verdict.action, verdict.cause) == (Action.RESOLVE, "read_only")
    finally:
        discard(replica)


# -- the server is busy, the network is dead ---------------------------------------------------
def test_too_many_connections_backs_off_until_a_slot_frees(cli, db, load, pg):
    migrate(cli, db.url)
    db.query(f"ALTER ROLE {APP_USER} CONNECTION LIMIT 1")
    hog = psycopg2.connect(db.url)
    try:
        run = load()
        wait_for(lambda: "too_many_connections" in run.causes(), what="a refused connection")
        hog.close()

        code, stderr = run.finish()
    finally:
        hog.close()
        pg.psql(f"ALTER ROLE {APP_USER} CONNECTION LIMIT -1")
    assert code == 0, stderr
    assert_exact_rows(db, load.document)
    assert run.retries()[0]["action"] == "back off on the same URL"


def test_a_blackholed_connection_is_detected_within_its_bound_and_recovered(cli, db, load, gate):
    migrate(cli, db.url)
    gate.install(after=1000)
    with TcpProxy("127.0.0.1", db.cluster.port) as proxy:
        url = db.url.replace(f":{db.cluster.port}/", f":{proxy.port}/")
        run = load(DATABASE_URL=url, DB_SILENCE_TIMEOUT="2", DB_CONNECT_TIMEOUT="2")
        wait_at_gate(gate, 1000)

        proxy.blackhole()
        cut = time.monotonic()
        gate.open()  # the batch completes at the server; its answer is swallowed
        wait_for(lambda: "no_answer" in run.causes(), timeout=30, what="the dead connection")
        detected = time.monotonic() - cut
        proxy.restore()

        code, stderr = run.finish()
    assert code == 0, stderr
    assert_exact_rows(db, load.document)
    # silence (2 s) + the probe's connect timeout (2 s), with room for a slow machine
    assert detected < 2 + 2 + 6
    assert (
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") == 0
    )  # the lost session that held the batch open was ended


# -- where the URL comes from ------------------------------------------------------------------
def first_line(result) -> str:
    return result.stdout.splitlines()[0] if result.stdout else ""


def test_the_platform_api_source_is_asked_with_the_documented_headers(cli, db, api):
    result = cli("check", **api_env(api))

    assert result.returncode == 0, result.stderr
    assert first_line(result) == (
        "database:  Heroku Platform API (nightshift DATABASE_URL)"
        f" (host=127.0.0.1 port={db.cluster.port} db={db.name})"
    )
    assert api.requests == 1
    assert TOKEN not in result.stdout + result.stderr


def test_the_platform_api_source_reads_the_config_var_it_is_told(cli, db, api):
    api.set("HEROKU_POSTGRESQL_RED_URL", db.url)
    api.set("DATABASE_URL", "postgres://nobody:x@127.0.0.1:1/none")

    result = cli("check", **api_env(api, DATABASE_CONFIG_VAR="HEROKU_POSTGRESQL_RED_URL"))

    assert result.returncode == 0, result.stderr
    assert "(nightshift HEROKU_POSTGRESQL_RED_URL)" in first_line(result)


def test_a_refused_api_token_is_one_clear_line(cli, api):
    result = cli("check", **api_env(api, HEROKU_API_KEY="wrong-token-value"))

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: cannot resolve the database URL from Heroku Platform API"
        " (nightshift DATABASE_URL): it answered 401: the token was refused; check HEROKU_API_KEY"
    )
    assert "wrong-token-value" not in result.stdout + result.stderr


def test_an_api_answering_503_is_retried_then_named(cli, api):
    api.fail(503)

    result = cli("check", **api_env(api, DB_RETRY_TIMEOUT="1"))

    assert result.returncode == 1
    [line] = [x for x in result.stderr.splitlines() if not x.startswith("{")]  # logs are JSON
    assert line.startswith("error: gave up after 1 s and ")
    assert line.endswith(
        "last cause resolver_failed: cannot resolve the database URL from Heroku Platform API"
        " (nightshift DATABASE_URL): it answered 503"
    )
    assert api.requests >= 2


def test_the_command_source_uses_its_stdout(cli, db, tmp_path):
    secret = tmp_path / "url"
    secret.write_text(db.url)

    result = cli("check", DATABASE_URL="", DATABASE_URL_COMMAND=f"cat {secret}")

    assert result.returncode == 0, result.stderr
    assert first_line(result).startswith("database:  DATABASE_URL_COMMAND (host=127.0.0.1")


def test_a_failing_command_is_named_with_its_exit_code(cli):
    result = cli(
        "check",
        DATABASE_URL="",
        DATABASE_URL_COMMAND="sh -c 'echo no such app >&2; exit 3'",
        DB_RETRY_TIMEOUT="1",
    )

    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "cannot resolve the database URL from DATABASE_URL_COMMAND: it exited 3: no such app"
        )
    )


def test_the_file_source_is_read_afresh_and_a_missing_file_is_named(cli, db, tmp_path):
    path = tmp_path / "database_url"
    missing = cli("check", DATABASE_URL="", DATABASE_URL_FILE=str(path), DB_RETRY_TIMEOUT="1")
    assert missing.returncode == 1
    expected = f"from DATABASE_URL_FILE ({path}): the file does not exist"
    assert missing.stderr.strip().splitlines()[-1].endswith(expected)

    path.write_text(db.url + "\n")
    found = cli("check", DATABASE_URL="", DATABASE_URL_FILE=str(path))

    assert found.returncode == 0, found.stderr
    assert first_line(found).startswith(f"database:  DATABASE_URL_FILE ({path}) (host=127.0.0.1")


def test_the_environment_source_is_the_default_inside_a_dyno(cli, db):
    result = cli("check")

    assert first_line(result).startswith("database:  environment DATABASE_URL (host=127.0.0.1")


def test_the_api_is_asked_once_for_a_whole_run_without_faults(cli, db, load, api):
    run = load(**api_env(api))

    code, stderr = run.finish()

    assert code == 0, stderr
    assert api.requests == 1
    assert run.tail.events("job_finished")[0]["batches"] == 6
    assert_no_secrets(run.output() + stderr)


def test_writes_refused_as_read_only_after_maintenance_are_retried_until_writable(
    cli, db, load, gate
):
    migrate(cli, db.url)
    gate.install(after=1000)
    run = load()
    pid = wait_at_gate(gate, 1000)

    # After maintenance Heroku can leave a database read-only "for a minute or three".
    db.query(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = on')
    db.query("SELECT pg_terminate_backend(%s)", (pid,))
    gate.open()
    wait_for(lambda: "read_only" in run.causes(), what="a write refused with 25006")
    db.query(f'ALTER DATABASE "{db.name}" SET default_transaction_read_only = off')

    code, stderr = run.finish()
    assert code == 0, stderr
    assert_exact_rows(db, load.document)
    refused = [r for r in run.retries() if r["cause"] == "read_only"]
    # A batch is one statement (WITH … UPDATE, INSERT … INSERT): PostgreSQL names the outer one.
    assert refused[0]["error"].startswith("25006 cannot execute INSERT in a read-only transaction")
    assert refused[0]["action"] == "resolve and reconnect"
