"""Every run is recorded: whatever text a job's failure carries, the run ends `failed` in
`nightshift.runs` (never left `running`, to be taken for a crash and resumed), and when the
database refuses even that record, a second, plainer statement still ends it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from worker.text import STORED_LIMIT

HOSTILE = {"JOBS_PACKAGE": "tests.hostile_jobs"}
GOOD = {"id": "good", "at": "2024-01-01T00:00:00Z"}


def fail_with(cli, feed, message: str, **env: str):
    feed.serve({"rows": [GOOD], "raise": message})
    return cli("run", "hostile", HOSTILE_URL=feed.url, **HOSTILE, **env)


def test_an_error_holding_nul_and_half_a_surrogate_pair_is_recorded_cleaned(cli, db, feed):
    result = fail_with(cli, feed, "bad\u0000byte and \ud800 half a pair")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: hostile failed: job: RuntimeError: badbyte and \ufffd half a pair"
    )
    [run] = db.runs()
    assert run["status"] == "failed"
    assert run["error"] == "job: RuntimeError: badbyte and \ufffd half a pair"
    assert not result.events("run_not_recorded")


def test_a_megabyte_error_is_recorded_bounded(cli, db, feed):
    result = fail_with(cli, feed, "x" * 1_000_000)

    assert result.returncode == 1
    [run] = db.runs()
    assert run["status"] == "failed"
    assert len(run["error"]) == STORED_LIMIT
    assert run["error"].startswith("job: RuntimeError: xxx") and run["error"].endswith("…")


def test_an_error_the_database_refuses_still_ends_the_run_failed_in_a_second_statement(
    cli, db, feed
):
    assert cli("migrate", **HOSTILE).returncode == 0
    # A real refusal by the server: a trigger of the test's own refuses this one error text.
    db.query(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.error LIKE '%poison%' THEN
                RAISE EXCEPTION 'this error text is refused' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE UPDATE ON nightshift.runs
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )

    result = fail_with(cli, feed, "a poison pill")

    assert result.returncode == 1
    [run] = db.runs()
    assert run["status"] == "failed"
    assert run["error"].startswith("failed; its error could not be recorded (")
    assert db.scalar("SELECT finished_at IS NOT NULL FROM nightshift.runs") is True
    [plain] = result.events("run_recorded_plainly")
    assert plain["status"] == "failed"
    assert "this error text is refused" in plain["error"]
    assert not result.events("run_not_recorded")
    # The lock went with the record: the next run starts at once and works.
    feed.serve({"rows": [{**GOOD, "id": "next"}]})
    again = cli("run", "hostile", HOSTILE_URL=feed.url, **HOSTILE)
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in db.runs()] == ["failed", "succeeded"]


ERROR_TEXTS = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), min_size=1, max_size=300
) | st.sampled_from(["\x00", "\ud800", "\udfff\x00\x1b]0;owned\x07", "<!channel>", "é" * 3000])


@hypothesis_settings(max_examples=12)
@given(message=ERROR_TEXTS)
def test_any_error_text_is_recorded_and_printable(cli, db, feed, message):
    result = fail_with(cli, feed, message)

    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    assert "error: hostile failed: job: RuntimeError" in result.stderr
    status = db.scalar(
        "SELECT status FROM nightshift.runs WHERE id = (SELECT max(id) FROM nightshift.runs)"
    )
    assert status == "failed"
    assert db.scalar("SELECT count(*) FROM nightshift.runs WHERE status = 'running'") == 0
