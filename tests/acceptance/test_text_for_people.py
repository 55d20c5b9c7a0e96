"""What a person reads (a terminal, a Slack channel) shows what came from outside (a row, a
source's answer, an error text, the database) and obeys none of it: a terminal gets control
characters escaped (`\\x1b`), a webhook's `text` gets `&`, `<` and `>` as Slack escapes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from worker.text import printable

JOBS = {"JOBS_PACKAGE": "tests.people_jobs"}
TITLE = "\x1b]0;pwned\x07"  # an OSC sequence: retitles the operator's terminal
CSI = "\x9b31m"  # an 8-bit CSI: red text, on a terminal that takes C1 controls
HOSTILE = f"{TITLE}boom{CSI}\r\n\u202egnp.exe"  # a carriage return, a line break, a bidi override
SHOWN = "\\x1b]0;pwned\\x07boom\\x9b31m\\r\\n\\u202egnp.exe"
# A run's error is one line (its whitespace, \r\n included, is collapsed where it is made).
ERROR = f"{TITLE}boom{CSI} \u202egnp.exe"
ERROR_SHOWN = "\\x1b]0;pwned\\x07boom\\x9b31m \\u202egnp.exe"
SLACK = "<!channel> see <https://evil.example|your dashboard> & act"
SLACK_SHOWN = "&lt;!channel&gt; see &lt;https://evil.example|your dashboard&gt; &amp; act"


def raw_controls(output: str) -> set[str]:
    """The characters a terminal would obey, other than the output's own line breaks."""
    return {c for c in output if c != "\n" and printable(c) != c}


@pytest.fixture
def say(tmp_path: Path):
    """`say(rows=…, error=…)`: the environment that makes the job `says` yield those rows and
    raise that error."""

    def env(rows: list | None = None, error: str | None = None, **more: str) -> dict[str, str]:
        doc = tmp_path / "people.json"
        doc.write_text(json.dumps({"rows": rows or [], "raise": error}))
        return {**JOBS, "PEOPLE_DOC": str(doc), **more}

    return env


def test_the_shown_form_is_what_printable_makes():
    assert (printable(HOSTILE), printable(ERROR)) == (SHOWN, ERROR_SHOWN)


def test_a_run_error_with_terminal_escapes_is_printed_escaped_by_run_runs_and_runs_json(
    cli, db, say
):
    failed = cli("run", "says", **say(error=ERROR))

    assert failed.returncode == 1
    assert failed.stderr == f"error: says failed: job: RuntimeError: {ERROR_SHOWN}\n"
    assert db.scalar("SELECT error FROM nightshift.runs") == f"job: RuntimeError: {ERROR}"
    table = cli("runs", **JOBS)
    assert table.returncode == 0
    assert raw_controls(table.stdout) == set()
    _header, row = table.stdout.splitlines()
    assert row.endswith(f"job: RuntimeError: {ERROR_SHOWN}")
    listed = cli("runs", "--json", **JOBS)
    assert raw_controls(listed.stdout) == set()
    [run] = json.loads(listed.stdout)
    assert run["error"] == f"job: RuntimeError: {ERROR_SHOWN}"  # escaped in the string itself


def test_refused_rows_with_terminal_escapes_are_printed_escaped_by_rejects(cli, db, say):
    rows = [{"id": HOSTILE, "n": f"1{TITLE}", "label": "ok"}]
    ran = cli("run", "says", **say(rows=rows))
    assert ran.returncode == 0, ran.stderr
    assert db.scalar("SELECT count(*) FROM nightshift.rejects") == 1

    table = cli("rejects", **JOBS)

    assert table.returncode == 0
    assert raw_controls(table.stdout) == set()
    _header, row = table.stdout.splitlines()
    assert 'invalid input syntax for type integer: "1\\x1b]0;pwned\\x07"' in row
    listed = cli("rejects", "--json", **JOBS)
    assert raw_controls(listed.stdout) == set()
    [reject] = json.loads(listed.stdout)
    assert (reject["key"], reject["row"]["id"]) == ({"id": SHOWN}, SHOWN)
    assert reject["row"]["n"] == "1\\x1b]0;pwned\\x07"
    assert reject["error"].endswith('invalid input syntax for type integer: "1\\x1b]0;pwned\\x07"')


def test_jobs_prints_the_dyno_of_a_running_run_escaped(cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    [(run_id,)] = db.query(
        "INSERT INTO nightshift.runs (job, trigger, dyno) VALUES ('says', 'manual', %s)"
        " RETURNING id",
        (HOSTILE,),
    )
    # A live session holds the job's lock, as a run's does: the run shows as running now.
    db.query("SELECT pg_advisory_lock(%s, hashtext('says'))", (0x4E53,))

    result = cli("jobs", **JOBS)

    assert result.returncode == 0
    assert raw_controls(result.stdout) == set()
    header, *rows = result.stdout.splitlines()
    [says] = [line for line in rows if line.startswith("says ")]
    assert f"run {run_id} on {SHOWN}" in says
    assert len(rows) == 2  # keeps_params, says
    assert says.index("public.said") == header.index("table")  # widths of the escaped cells


def test_check_and_migrate_print_a_type_name_from_the_database_escaped(cli, db):
    assert cli("migrate", **JOBS).returncode == 0
    db.query(f'CREATE DOMAIN "t{TITLE}" AS text')
    db.query(f'ALTER TABLE said ALTER COLUMN label TYPE "t{TITLE}"')

    checked = cli("check", **JOBS)
    migrated = cli("migrate", **JOBS)

    assert (checked.returncode, migrated.returncode) == (1, 1)
    for output in (checked.stdout, checked.stderr, migrated.stdout, migrated.stderr):
        assert raw_controls(output) == set()
    shown = 'column label: declared text, actual "t\\x1b]0;pwned\\x07"'
    assert shown in checked.stdout
    assert shown in migrated.stderr


def test_slack_markup_in_an_error_reaches_the_webhook_text_escaped_and_its_fields_plain(
    cli, say, webhook
):
    result = cli("run", "says", **say(error=SLACK, ALERT_WEBHOOK_URL=webhook.url))

    assert result.returncode == 1
    [alert] = webhook.received
    assert alert["text"] == (
        f":rotating_light: Nightshift job says failed (run 1 on test.1): job: RuntimeError:"
        f" {SLACK_SHOWN}"
    )
    assert alert["error"] == f"job: RuntimeError: {SLACK}"  # data, for machines: as it is


def test_the_recovered_and_rejected_messages_escape_the_dyno(cli, say, webhook):
    assert cli("run", "says", **say(error="down", ALERT_WEBHOOK_URL=webhook.url)).returncode == 1
    dyno = "worker.1 <!here> & <https://evil.example|x>"
    rows = [{"id": "a", "n": 1}, {"id": "b", "n": "x"}]

    result = cli("run", "says", **say(rows=rows, ALERT_WEBHOOK_URL=webhook.url, DYNO=dyno))

    assert result.returncode == 0, result.stderr
    _, recovered, rejected = webhook.received
    shown = "worker.1 &lt;!here&gt; &amp; &lt;https://evil.example|x&gt;"
    assert recovered["text"] == (
        f":white_check_mark: Nightshift job says recovered (run 2 on {shown}) after 1 failed run(s)"
    )
    assert rejected["text"] == (
        f":warning: Nightshift job says loaded 1 row(s) and 1 row(s) refused (run 2 on {shown});"
        " see `python -m worker rejects says`"
    )
    assert (recovered["dyno"], rejected["dyno"]) == (dyno, dyno)


def test_a_console_log_line_shows_values_with_terminal_escapes_escaped(cli, tmp_path):
    # On a terminal (heroku run) the log is the console renderer's: it writes a string with no
    # space or quote as it is (one with a space as its repr). Its own colours are escape codes,
    # so look for the hostile sequences themselves.
    doc = tmp_path / "people.json"
    doc.write_text(json.dumps({"note": f"{TITLE}boom{CSI}", "raise": ERROR}))

    result = cli("run", "says", LOG_FORMAT="console", PEOPLE_DOC=str(doc), **JOBS)

    assert result.returncode == 1
    [noted] = [line for line in result.stdout.splitlines() if "noted" in line]
    assert "\\x1b]0;pwned\\x07boom\\x9b31m" in noted
    [finished] = [line for line in result.stdout.splitlines() if "job_finished" in line]
    assert re.search(r"\\+x1b\]0;pwned\\+x07boom\\+x9b31m \\+u202egnp\.exe", finished)
    for sequence in (TITLE, CSI, "\u202e"):
        assert sequence not in result.stdout
