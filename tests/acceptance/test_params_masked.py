"""A run parameter named like a credential (api_key, token, password…: the masking word list)
reaches the job as it is, and nobody else: the log, the run history, `runs`, `runs --json` and
the alerts show `***`. `runs --json` says each run's parameters and window."""

from __future__ import annotations

import json

from tests.support import wait_for

JOBS = {"JOBS_PACKAGE": "tests.people_jobs"}
API_KEY = "AK-param-d1stinct-v4lue-93"  # distinctive: any occurrence in output is a leak


def everything(*results) -> str:
    return "".join(result.stdout + result.stderr for result in results)


def test_a_credential_parameter_reaches_the_job_and_is_masked_in_the_log_and_history(cli, db):
    ran = cli(
        "run", "keeps_params", "--param", f"api_key={API_KEY}", "--param", "region=ca",
        "--since", "2024-01-01", "--until", "2024-01-31", "--full-refresh", **JOBS,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    assert db.query("SELECT name, value FROM kept_params ORDER BY name") == [
        ("api_key", API_KEY),  # the job received the real value
        ("region", "ca"),
    ]
    recorded = {"api_key": "***", "region": "ca", "full_refresh": True}
    recorded |= {"since": "2024-01-01", "until": "2024-01-31"}
    assert db.scalar("SELECT params FROM nightshift.runs") == recorded
    [started] = ran.events("job_started")
    assert started["params"] == recorded
    listed = cli("runs", "--json", **JOBS)
    [run] = json.loads(listed.stdout)
    assert run["params"] == {"api_key": "***", "region": "ca"}
    assert (run["since"], run["until"], run["full_refresh"]) == ("2024-01-01", "2024-01-31", True)
    table = cli("runs", **JOBS)
    header, row = table.stdout.splitlines()
    assert header.split()[-2:] == ["params", "error"]
    assert row.endswith("api_key=*** region=ca since=2024-01-01 until=2024-01-31 full_refresh")
    assert API_KEY not in everything(ran, listed, table)


def test_runs_shows_no_window_and_no_parameters_as_such(cli, db):
    assert cli("run", "keeps_params", **JOBS).returncode == 0

    [run] = json.loads(cli("runs", "--json", **JOBS).stdout)
    row = cli("runs", **JOBS).stdout.splitlines()[1]

    assert run["params"] == {}
    assert (run["since"], run["until"], run["full_refresh"]) == (None, None, False)
    assert row.split()[-1] == "-"


def test_an_error_quoting_a_credential_parameter_is_masked_in_the_record_and_the_alert(
    cli, db, webhook
):
    ran = cli(
        "run", "keeps_params", "--param", f"api_key={API_KEY}", "--param", "fail=yes",
        ALERT_WEBHOOK_URL=webhook.url, **JOBS,
    )  # fmt: skip

    assert ran.returncode == 1
    error = "job: RuntimeError: the source refused the key ***"
    assert ran.stderr == f"error: keeps_params failed: {error}\n"
    [finished] = ran.events("job_finished")
    assert finished["error"] == error
    assert db.scalar("SELECT error FROM nightshift.runs") == error
    [alert] = webhook.received
    assert alert["error"] == error
    assert alert["text"].endswith(f"(run 1 on test.1): {error}")
    assert API_KEY not in everything(ran) + json.dumps(alert)


def test_runs_masks_a_credential_recorded_in_clear_before_it_was_masked_at_the_source(cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, params)"
        " VALUES ('keeps_params', 'manual', 'succeeded', %s)",
        (json.dumps({"access_token": "old-cle4rtext-tok3n", "region": "eu"}),),
    )

    listed = cli("runs", "--json", **JOBS)
    table = cli("runs", **JOBS)

    [run] = json.loads(listed.stdout)
    assert run["params"] == {"access_token": "***", "region": "eu"}
    assert table.stdout.splitlines()[1].endswith("access_token=*** region=eu")
    assert "old-cle4rtext-tok3n" not in everything(listed, table)


def test_a_queued_request_with_a_credential_runs_with_it_and_records_it_masked(cli, db, workers):
    for extra in ([], ["--param", "fail=yes"]):
        queued = cli("trigger", "keeps_params", "--param", f"api_key={API_KEY}", *extra, **JOBS)
        assert queued.returncode == 0, queued.stderr

    _, tail = workers(**JOBS)

    wait_for(lambda: len(tail.events("job_finished")) == 2, what="both queued runs to finish")
    succeeded, failed = tail.events("job_finished")
    assert (succeeded["status"], failed["status"]) == ("succeeded", "failed")
    assert failed["error"] == "job: RuntimeError: the source refused the key ***"
    assert db.scalar("SELECT value FROM kept_params WHERE name = 'api_key'") == API_KEY
    assert db.query("SELECT params FROM nightshift.runs ORDER BY id") == [
        ({"api_key": "***"},),
        ({"api_key": "***", "fail": "yes"},),
    ]
    assert [line["params"] for line in tail.events("job_started")] == [
        {"api_key": "***"},
        {"api_key": "***", "fail": "yes"},
    ]
    assert API_KEY not in "".join(tail.raw)


def test_a_run_cut_short_holding_a_masked_credential_is_refused_resume_while_others_resume(
    cli, db, workers, tmp_path
):
    assert cli("migrate", **JOBS).returncode == 0
    [(masked,), (plain,)] = db.query(
        "INSERT INTO nightshift.runs (job, trigger, status, params) VALUES"
        """ ('keeps_params', 'queued', 'interrupted', '{"api_key": "***", "region": "ca"}'),"""
        """ ('says', 'queued', 'interrupted', '{"region": "ca"}') RETURNING id"""
    )
    doc = tmp_path / "people.json"
    doc.write_text(json.dumps({"rows": [{"id": "a", "n": 1}]}))

    _, tail = workers(PEOPLE_DOC=str(doc), **JOBS)

    finished = tail.wait_event("job_finished")
    # Both were found by the same look, in one pass: only the one a run can take is resumed.
    assert [line["resumes"] for line in tail.events("job_resuming")] == [plain]
    assert (finished["job"], finished["status"]) == ("says", "succeeded")
    assert db.query(
        "SELECT id, status, resumed_by IS NOT NULL FROM nightshift.runs WHERE id IN (%s, %s)"
        " ORDER BY id",
        (masked, plain),
    ) == [(masked, "interrupted", True), (plain, "interrupted", True)]
    # Settled once, saying why: the credential's value is kept nowhere, so no run can take it.
    [(status, error)] = db.query(
        "SELECT status, error FROM nightshift.runs WHERE resumes = %s", (masked,)
    )
    assert status == "refused"
    assert error.startswith(f"resume of run {masked} refused: ") and "api_key" in error
