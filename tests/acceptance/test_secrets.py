"""No password, token or full database URL reaches a log line, an error or CLI output."""

from __future__ import annotations

import json

from tests.conftest import APP_USER, PASSWORD


def everything(result) -> str:
    return result.stdout + result.stderr


def test_success_output_holds_no_password_url_or_user(cli):
    for args in (("migrate",), ("check",), ("run", "earthquakes"), ("runs", "--json"), ("jobs",)):
        result = cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert PASSWORD not in everything(result)
        assert cli.env["DATABASE_URL"] not in everything(result)


def test_a_rejected_password_fails_with_one_line_naming_authentication(cli, db):
    wrong = "Wr0ng-but-st1ll-s3cret-pass"
    url = db.url.replace(PASSWORD, wrong)

    result = cli("run", "earthquakes", DATABASE_URL=url, DB_RETRY_TIMEOUT="1")

    assert result.returncode == 1
    output = everything(result)
    for secret in (wrong, PASSWORD, url):
        assert secret not in output
    assert f'"{APP_USER}"' not in output  # libpq names the role; we mask it
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: earthquakes failed: database: gave up after ")
    assert line.endswith('last cause auth_failed: password authentication failed for user "***"')
    [finished] = result.events("job_finished")
    assert finished["status"] == "failed"


def test_a_malformed_url_is_refused_without_echoing_it(cli):
    url = "postgres://someone:Secr3t-In-A-Bad-Url@[db.example.com/x"

    result = cli("check", DATABASE_URL=url)

    assert result.returncode == 1
    assert "Secr3t-In-A-Bad-Url" not in everything(result)
    assert result.stderr.strip() == (
        "error: cannot resolve the database URL from environment DATABASE_URL:"
        " it is not a valid PostgreSQL URL"
    )


def test_check_never_shows_credentials_but_says_where_the_url_came_from(cli, db):
    result = cli("check")

    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert first == (
        f"database:  environment DATABASE_URL (host=127.0.0.1 port={db.cluster.port} db={db.name})"
    )
    assert APP_USER not in result.stdout


def test_runs_history_holds_no_secret_after_a_failed_connection(cli, db):
    cli("run", "earthquakes")
    cli("run", "earthquakes", USGS_FEED_URL=f"http://x:{PASSWORD}@127.0.0.1:9/f")

    result = cli("runs", "--json")

    assert PASSWORD not in json.dumps(json.loads(result.stdout))
    assert PASSWORD not in json.dumps(db.query("SELECT * FROM nightshift.runs"), default=str)
