"""SSL: required for any non-local host unless the URL says otherwise; `check` reports it."""

from __future__ import annotations

import pytest

from worker.database.resolver import parse


@pytest.mark.parametrize(
    ("url", "sslmode"),
    [
        ("postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d", "require"),
        ("postgres://u:p@10.1.2.3/d", "require"),
        ("postgres://u:p@db.example.com/d?sslmode=verify-full", "verify-full"),
        ("postgres://u:p@db.example.com/d?sslmode=disable", "disable"),
        ("postgres://u:p@localhost/d", None),
        ("postgres://u:p@127.0.0.1:5433/d", None),
        ("postgres://u:p@[::1]/d", None),
        ("postgresql:///d?host=/var/run/postgresql", None),
    ],
)
def test_non_local_hosts_get_sslmode_require_unless_the_url_says(url, sslmode):
    assert parse(url, "test").params.get("sslmode") == sslmode


def test_check_reports_ssl_in_use(cli, db):
    result = cli("check")

    assert result.returncode == 0, result.stderr
    assert "ssl:       yes" in result.stdout.splitlines()


def test_check_reports_ssl_off_when_the_url_disables_it(cli, db):
    result = cli("check", DATABASE_URL=db.url + "?sslmode=disable")

    assert result.returncode == 0, result.stderr
    assert "ssl:       no" in result.stdout.splitlines()
