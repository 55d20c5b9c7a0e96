"""The status page behind Heroku's router, which ends HTTPS and forwards plain HTTP saying
`X-Forwarded-Proto: https`: there the session cookie is `Secure` and HSTS is sent, served by
`python -m worker web` or mounted under a prefix of another app; over plain HTTP (locally)
neither, and the page keeps working. A STATUS_PASSWORD shorter than 12 characters is refused
at start, in one line that never shows it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from config import Settings
from tests.conftest import Cli, Database
from tests.support import StatusPage, serving_status_page
from worker.registry import discover
from worker.web import create_app

pytestmark = pytest.mark.timeout(120)

STATUS_PASSWORD = "R0uter-Pa55-Distinctive"
SHORT_PASSWORD = "Sh0rt-Pa55!"  # 11 characters, one too few
HSTS = "max-age=31536000"
# Jobs of the tests' own, so that the jobs page has a "Run now" form (and so a session cookie).
JOBS = "tests.hostile_jobs"
HTTPS = {"X-Forwarded-Proto": "https"}


def cookie_attributes(set_cookie: str) -> set[str]:
    """A Set-Cookie header's attribute names, lower-cased: {"path", "httponly", "secure", ...}."""
    return {part.split("=")[0].strip().lower() for part in set_cookie.split(";")[1:]}


@pytest.fixture
def page(cli: Cli) -> Iterator[StatusPage]:
    """`python -m worker web` (gunicorn) on a free loopback port, once it answers.

    gunicorn trusts X-Forwarded-Proto from loopback only; Heroku's router is not on loopback.
    FORWARDED_ALLOW_IPS (gunicorn's own variable) names an address no test connects from, so
    that here too, as on Heroku, only the page itself can honour the header.
    """
    assert cli("migrate", JOBS_PACKAGE=JOBS).returncode == 0
    served = serving_status_page(
        cli, STATUS_PASSWORD, JOBS_PACKAGE=JOBS, FORWARDED_ALLOW_IPS="192.0.2.1"
    )
    with served as page:
        yield page


def test_over_https_through_the_router_the_cookie_is_secure_and_hsts_is_sent(page: StatusPage):
    answer = page.get("/", headers=HTTPS)

    assert answer.status_code == 200
    assert 'name="csrf_token"' in answer.text
    assert cookie_attributes(answer.headers["Set-Cookie"]) >= {"secure", "httponly", "path"}
    assert answer.headers["Strict-Transport-Security"] == HSTS
    # Every answer over HTTPS carries it, the password challenge included.
    refused = page.get("/", password=None, headers=HTTPS)
    assert refused.status_code == 401
    assert refused.headers["Strict-Transport-Security"] == HSTS


def test_over_plain_http_the_cookie_is_not_secure_no_hsts_and_run_now_works(page: StatusPage, db):
    for headers in ({}, {"X-Forwarded-Proto": "http"}):
        answer = page.get("/", headers=headers)
        assert answer.status_code == 200
        assert "secure" not in cookie_attributes(answer.headers["Set-Cookie"]), headers
        assert "Strict-Transport-Security" not in answer.headers, headers
    assert "Strict-Transport-Security" not in page.get("/", password=None).headers

    # The session works over plain HTTP: a client (as a browser) sends a Secure cookie back only
    # over HTTPS, so were it Secure here the form's CSRF check would refuse "Run now".
    operator = requests.Session()
    operator.auth = ("nightshift", STATUS_PASSWORD)
    jobs = operator.get(page.url + "/", timeout=10).text
    form = re.search(r'action="(/jobs/(\w+)/run)".*?name="csrf_token" value="([^"]+)"', jobs, re.S)
    action, job, token = form[1], form[2], form[3]
    queued = operator.post(page.url + action, data={"csrf_token": token}, timeout=10)
    assert f"{job}: queued (request 1)" in queued.text
    assert db.scalar("SELECT job FROM nightshift.triggers") == job


def test_mounted_under_a_prefix_of_another_app_the_page_honours_the_router_too(db: Database):
    settings = Settings.from_env({"DATABASE_URL": db.url, "STATUS_PASSWORD": STATUS_PASSWORD})
    host = Flask("myapp")  # the README's "Inside an existing web app", as written there
    host.add_url_rule("/", "home", lambda: "the app's own home page")
    host.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        host.wsgi_app, {"/status": create_app(settings, discover(JOBS))}
    )
    client = host.test_client(use_cookies=False)  # each request as a new visitor
    auth = {
        "Authorization": "Basic " + base64.b64encode(b"op:" + STATUS_PASSWORD.encode()).decode()
    }

    over_https = client.get("/status/", headers={**auth, **HTTPS})
    assert over_https.status_code == 200
    [cookie] = over_https.headers.getlist("Set-Cookie")
    assert cookie.startswith("nightshift_status=") and "Path=/status/" in cookie
    assert "secure" in cookie_attributes(cookie)
    assert over_https.headers["Strict-Transport-Security"] == HSTS

    over_http = client.get("/status/", headers=auth)
    assert over_http.status_code == 200
    assert "secure" not in cookie_attributes(over_http.headers["Set-Cookie"])
    assert "Strict-Transport-Security" not in over_http.headers
    assert client.get("/", headers=HTTPS).text == "the app's own home page"


def test_a_status_password_shorter_than_12_characters_is_refused_at_start(cli: Cli):
    result = cli("web", "--host", "127.0.0.1", PORT="1", STATUS_PASSWORD=SHORT_PASSWORD)

    assert result.returncode == 1
    assert result.stderr == (
        "error: STATUS_PASSWORD is too short: the status page needs at least 12 characters"
        " (make one with `openssl rand -base64 24`)\n"
    )
    assert result.stdout == ""
    assert SHORT_PASSWORD not in result.stderr + result.stdout
