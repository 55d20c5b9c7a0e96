"""An asynchronous failover that loses batches a run saw commit: the run loads them again from
the state the promoted replica holds, found mid-run or at the finish, and never reports
`succeeded` with batches missing."""

from __future__ import annotations

from tests.acceptance.test_resilience import (
    TOKEN,
    api_env,
    assert_exact_rows,
    migrate,
    wait_at_gate,
)
from tests.conftest import Database, Gate
from tests.faults import HerokuApi, catch_up, discard, make_replica, promote
from tests.support import wait_for

FINISH_GATE = 4343


def cut_replication(replica) -> None:
    """The replica stops receiving WAL: what the primary commits from now on, it never gets."""
    replica.psql("ALTER SYSTEM SET primary_conninfo = ''")
    replica.psql("SELECT pg_reload_conf()")
    wait_for(
        lambda: replica.psql("SELECT count(*) FROM pg_stat_wal_receiver").strip() == "0",
        what="the replica's WAL receiver to stop",
    )


def fail_over(own: Database, replica, api: HerokuApi, new_primary: Database) -> None:
    own.cluster.stop("immediate")
    promote(replica)
    api.set("DATABASE_URL", new_primary.url)


def test_batches_lost_mid_run_are_loaded_again_from_the_state_the_replica_holds(cli, own, load):
    replica = make_replica(own.cluster)
    new_primary = Database(replica, "app")
    try:
        with HerokuApi({"DATABASE_URL": own.url}, token=TOKEN, app="nightshift") as api:
            migrate(cli, own.url)
            gate = Gate(own)
            gate.install(after=[1000, 2000])
            run = load(**api_env(api))
            wait_at_gate(gate, 1000)
            catch_up(own.cluster, replica)  # the replica holds batches 1 and 2
            cut_replication(replica)
            gate.open(0)
            wait_at_gate(gate, 2000)  # batches 3 and 4 committed on the primary only

            fail_over(own, replica, api, new_primary)

            code, stderr = run.finish()
            gate.close()
        assert code == 0, stderr
        assert_exact_rows(new_primary, load.document)
        [lost] = run.tail.events("batches_lost")
        assert (lost["batches_seen"], lost["batches_held"], lost["reload"]) == (4, 2, 1)
        [finished] = run.tail.events("job_finished")
        [recorded] = new_primary.runs()
        assert (finished["status"], recorded["status"]) == ("succeeded", "succeeded")
        assert recorded["rows"] == finished["rows"] >= 3000  # rows at the cursor come again
        # Each row changed once on the new primary: the count taken up from the batches held
        # is the run's own, not the one the last held batch recorded (its own not yet in).
        assert recorded["changed"] == finished["changed"] == 3000
    finally:
        new_primary.close()
        discard(replica)


def test_batches_lost_found_at_the_finish_are_loaded_again_before_it_succeeds(cli, own, load):
    replica = make_replica(own.cluster)
    new_primary = Database(replica, "app")
    try:
        with HerokuApi({"DATABASE_URL": own.url}, token=TOKEN, app="nightshift") as api:
            migrate(cli, own.url)
            gate = Gate(own)
            gate.install(after=1000)
            # A second stop, in front of the run's final record.
            gate.db.query(
                f"""
                CREATE FUNCTION finish_gate() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF NEW.status <> 'running' THEN
                    PERFORM pg_advisory_lock_shared({FINISH_GATE});
                    PERFORM pg_advisory_unlock_shared({FINISH_GATE});
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER finish_gate BEFORE UPDATE ON nightshift.runs
                  FOR EACH ROW EXECUTE FUNCTION finish_gate();
                """
            )
            with gate.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (FINISH_GATE,))
            run = load(**api_env(api))
            wait_at_gate(gate, 1000)
            catch_up(own.cluster, replica)
            cut_replication(replica)
            gate.open(0)
            wait_for(
                lambda: own.scalar("SELECT count(*) FROM earthquakes") == 3000 and gate.waiting(),
                what="the run's final record waiting at its gate",
            )

            fail_over(own, replica, api, new_primary)

            code, stderr = run.finish()
            gate.close()
        assert code == 0, stderr
        assert_exact_rows(new_primary, load.document)
        [lost] = run.tail.events("batches_lost")
        assert (lost["batches_seen"], lost["batches_held"]) == (6, 2)
        assert [line["status"] for line in run.tail.events("job_finished")] == ["succeeded"]
        [recorded] = new_primary.runs()
        assert recorded["status"] == "succeeded"
        assert recorded["rows"] >= 3000
        assert recorded["changed"] == 3000
    finally:
        new_primary.close()
        discard(replica)
