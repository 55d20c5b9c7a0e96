"""The status page in a real browser: jobs, plots, history filters, a run's detail, "Run now"
picked up by a running worker; and over plain HTTP, its password and CSRF checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import (
    FEED_TOKEN,
    PARAM_SECRET,
    STATUS_PASSWORD,
    History,
    StatusPage,
    sign_in,
)
from tests.conftest import PASSWORD, ROOT, assert_no_secrets
from tests.support import wait_for

SCREENSHOT = ROOT / "docs" / "status-page.png"
pytestmark = pytest.mark.timeout(240)


def wait(driver, css: str, timeout: float = 15):
    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def cells(row) -> dict[str, str]:
    """A jobs-table row's cells by their class."""
    found = {}
    for cell in row.find_elements(By.CSS_SELECTOR, "td"):
        for name in (cell.get_attribute("class") or "").split():
            found[name] = cell.text
    return found


def history_ids(driver) -> list[int]:
    rows = driver.find_elements(By.CSS_SELECTOR, "table.runs tr.run")
    return [int(row.get_attribute("data-run-id")) for row in rows]


def test_the_jobs_page_shows_schedules_next_fire_last_runs_and_a_plot_per_job(
    status_page: StatusPage, browser, history: History
):
    sign_in(browser)
    browser.get(status_page.url + "/")
    table = wait(browser, "table.jobs")

    quakes = cells(table.find_element(By.CSS_SELECTOR, 'tr[data-job="earthquakes"]'))
    assert quakes["schedule"] == "0 3 * * * (UTC)"  # EARTHQUAKES_SCHEDULE, as the worker reads it
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 03:00:00 UTC", quakes["next"])
    assert quakes["last"].splitlines()[0] == f"run {history.failed} failed"
    assert (quakes["rows"], quakes["rejected"]) == ("0", "0")
    assert re.fullmatch(r"\d+\.\d\d s", quakes["took"])
    assert quakes["running"] == "-"
    other = cells(table.find_element(By.CSS_SELECTOR, 'tr[data-job="earthquakes_history"]'))
    assert other["schedule"] == "off"
    assert other["next"] == "-"
    assert other["last"].splitlines()[0] == f"run {history.other_job_failed} failed"

    # One mark per run, oldest first, and only the failed run marked as failed.
    plot = browser.find_element(By.CSS_SELECTOR, 'svg.plot[data-job="earthquakes"]')
    marks = plot.find_elements(By.CSS_SELECTOR, "g.run")
    assert [int(m.get_attribute("data-run-id")) for m in marks] == history.earthquakes
    failed = plot.find_elements(By.CSS_SELECTOR, "g.run.failed")
    assert [m.get_attribute("data-run-id") for m in failed] == [str(history.failed)]
    heights = {
        int(m.get_attribute("data-run-id")): float(
            m.find_element(By.CSS_SELECTOR, "rect.rows").get_attribute("height")
        )
        for m in marks
    }
    assert heights[history.loaded[0]] == 80.0  # the tallest: 151 rows, the most of any run
    assert heights[history.failed] == 0.0
    assert failed[0].find_elements(By.CSS_SELECTOR, "rect.marker")
    other_plot = browser.find_element(By.CSS_SELECTOR, 'svg.plot[data-job="earthquakes_history"]')
    assert other_plot.get_attribute("data-failures") == "1"

    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_in_progress_shows_as_running_now_on_its_dyno(
    status_page: StatusPage, browser, cli, gate
):
    assert cli("run", "earthquakes").returncode == 0
    gate.install(after=0)  # the next INSERT into earthquakes waits
    held = cli.spawn("run", "earthquakes", "--full-refresh", DYNO="run.4242")
    try:
        wait_for(gate.waiting, timeout=30, what="the run to reach the gate")
        sign_in(browser)
        browser.get(status_page.url + "/")
        row = wait(browser, 'tr[data-job="earthquakes"]')
        assert cells(row)["running"] == "running now on run.4242"
        link = row.find_element(By.CSS_SELECTOR, "td.running a").get_attribute("href")
        assert link.endswith("/runs/2")
    finally:
        gate.open()
        out, err = held.communicate(timeout=60)
    assert held.returncode == 0, err
    assert_no_secrets(out + err, cli.env["DATABASE_URL"])
    browser.refresh()
    row = wait(browser, 'tr[data-job="earthquakes"]')
    assert cells(row)["running"] == "-"
    assert cells(row)["last"].splitlines()[0] == "run 2 succeeded"


def test_the_history_narrows_by_job_and_status_from_the_filters(
    status_page: StatusPage, browser, history: History
):
    sign_in(browser)
    browser.get(status_page.url + "/runs")
    wait(browser, "table.runs")
    everything = [history.other_job_failed, *reversed(history.earthquakes)]
    assert history_ids(browser) == everything  # newest first

    Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    WebDriverWait(browser, 15).until(ec.url_contains("status=failed"))
    assert history_ids(browser) == [history.other_job_failed, history.failed]

    Select(browser.find_element(By.NAME, "job")).select_by_value("earthquakes")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    WebDriverWait(browser, 15).until(ec.url_contains("job=earthquakes&"))
    assert history_ids(browser) == [history.failed]
    assert Select(browser.find_element(By.NAME, "status")).first_selected_option.text == "failed"

    Select(browser.find_element(By.NAME, "status")).select_by_value("succeeded")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    WebDriverWait(browser, 15).until(ec.url_contains("status=succeeded"))
    assert history_ids(browser) == [
        history.with_params,
        *reversed(history.loaded),
        history.rejected,
    ]

    browser.get(status_page.url + "/runs?job=earthquakes_history&status=succeeded")
    assert "No runs match." in wait(browser, "table.runs").text
    assert history_ids(browser) == []
    assert status_page.get("/runs?status=nonsense").status_code == 400


def test_a_runs_detail_shows_its_error_parameters_and_refused_rows(
    status_page: StatusPage, browser, history: History
):
    sign_in(browser)
    browser.get(status_page.url + "/runs?status=failed&job=earthquakes")
    wait(browser, "table.runs").find_element(By.LINK_TEXT, str(history.failed)).click()
    error = wait(browser, "pre#error").text
    assert error.startswith("source: GET http://127.0.0.1:")
    assert "?token=***" in error and "500" in error

    browser.get(f"{status_page.url}/runs/{history.with_params}")
    params = {
        row.get_attribute("data-param"): row.find_elements(By.TAG_NAME, "td")[1].text
        for row in wait(browser, "table.params").find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert params == {"api_key": "***", "region": "ca"}

    browser.get(f"{status_page.url}/runs/{history.rejected}")
    [reject] = wait(browser, "table.rejects").find_elements(By.CSS_SELECTOR, "tr.reject")
    assert '22P02 invalid input syntax for type double precision: "strong"' in reject.text
    assert '"mag": "strong"' in reject.text
    assert browser.find_element(By.CSS_SELECTOR, "dd.rejected").text == "1"
    assert browser.find_element(By.CSS_SELECTOR, "dd.rows").text == "39 written, 39 new or changed"

    assert status_page.get("/runs/999999").status_code == 404


def test_no_page_shows_a_password_url_or_token(
    status_page: StatusPage, browser, history: History, db
):
    # As if a run had recorded the database URL in its error (the worker masks it before it
    # writes; the page masks again whatever it shows).
    db.query(
        "UPDATE nightshift.runs SET error = error || %s WHERE id = %s",
        (f" (while connected to {db.url})", history.other_job_failed),
    )
    sign_in(browser)
    pages = ["/", "/runs", "/runs?status=failed"]
    pages += [f"/runs/{run_id}" for run_id in [*history.earthquakes, history.other_job_failed]]
    for path in pages:
        browser.get(status_page.url + path)
        wait(browser, "main")
        source = browser.page_source
        for secret in (PASSWORD, db.url, STATUS_PASSWORD, PARAM_SECRET, FEED_TOKEN):
            assert secret not in source, f"{path} shows a secret"
    browser.get(f"{status_page.url}/runs/{history.other_job_failed}")
    assert "(while connected to postgresql://***@127.0.0.1:" in wait(browser, "pre#error").text


def test_without_the_password_nothing_is_shown(status_page: StatusPage, history: History, db):
    for password in (None, "wrong-password", STATUS_PASSWORD.lower()):
        for path in ("/", "/runs", f"/runs/{history.failed}", "/no-such-page"):
            answer = status_page.get(path, password=password)
            assert answer.status_code == 401, (path, password)
            assert answer.headers["WWW-Authenticate"].startswith('Basic realm="Nightshift status"')
            assert "earthquakes" not in answer.text and "<table" not in answer.text
        post = requests.post(
            status_page.url + "/jobs/earthquakes/run",
            auth=("nightshift", password) if password else None,
            timeout=10,
        )
        assert post.status_code == 401
    assert db.scalar("SELECT count(*) FROM nightshift.triggers") == 0
    # Any user name will do; the password is what counts.
    assert status_page.get("/", password=STATUS_PASSWORD).status_code == 200
    answer = requests.get(status_page.url + "/", auth=("someone", STATUS_PASSWORD), timeout=10)
    assert answer.status_code == 200 and 'data-job="earthquakes"' in answer.text


def test_run_now_refuses_a_post_without_this_sessions_csrf_token(status_page: StatusPage, cli, db):
    assert cli("migrate").returncode == 0
    url = status_page.url + "/jobs/earthquakes/run"
    auth = ("nightshift", STATUS_PASSWORD)
    operator = requests.Session()
    operator.auth = auth
    page = operator.get(status_page.url + "/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    stranger = requests.Session()
    stranger.auth = auth  # knows the password, but not this session's token

    refused = [
        requests.post(url, auth=auth, timeout=10),  # no session, no token
        operator.post(url, data={}, timeout=10, allow_redirects=False),  # no token
        operator.post(url, data={"csrf_token": token[:-2] + "xx"}, timeout=10),  # wrong token
        stranger.post(url, data={"csrf_token": token}, timeout=10),  # another session's token
    ]
    assert [answer.status_code for answer in refused] == [403, 403, 403, 403]
    assert "CSRF" in refused[0].text
    assert db.scalar("SELECT count(*) FROM nightshift.triggers") == 0

    accepted = operator.post(url, data={"csrf_token": token}, timeout=10, allow_redirects=False)
    assert accepted.status_code == 303
    assert db.scalar("SELECT count(*) FROM nightshift.triggers WHERE claimed_at IS NULL") == 1


def test_run_now_says_whether_it_queued_a_request_or_joined_a_pending_one(
    status_page: StatusPage, cli, db
):
    assert cli("migrate").returncode == 0
    operator = requests.Session()
    operator.auth = ("nightshift", STATUS_PASSWORD)

    def run_now() -> str:
        page = operator.get(status_page.url + "/", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        answer = operator.post(
            status_page.url + "/jobs/earthquakes/run", data={"csrf_token": token}, timeout=10
        )
        assert answer.status_code == 200
        return re.search(r'<p class="flash (\w+)" role="status">([^<]*)</p>', answer.text).groups()

    assert run_now() == ("ok", "earthquakes: queued (request 1); a running worker picks it up")
    second = run_now()
    pending = db.query("SELECT id FROM nightshift.triggers WHERE claimed_at IS NULL ORDER BY id")
    if pending == [(1,)]:  # the queue coalesced the identical request into the pending one
        assert second == (
            "ok",
            "earthquakes: joined a pending request 1; a running worker picks it up",
        )
    else:
        assert pending == [(1,), (2,)]
        assert second == ("ok", "earthquakes: queued (request 2); a running worker picks it up")
    page = operator.get(status_page.url + "/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    unknown = operator.post(status_page.url + "/jobs/nosuchjob/run", data={"csrf_token": token})
    assert unknown.status_code == 404


def test_run_now_clicked_in_the_browser_is_run_by_a_worker(
    status_page: StatusPage, browser, workers, db
):
    _, tail = workers(EARTHQUAKES_SCHEDULE="off", DYNO="worker.1")
    tail.wait_event("trigger_listener_started")
    sign_in(browser)
    browser.get(status_page.url + "/")
    row = wait(browser, 'tr[data-job="earthquakes"]')
    assert cells(row)["last"] == "never"

    row.find_element(By.CSS_SELECTOR, "button.run-now").click()
    flash = wait(browser, "p.flash.ok").text
    assert flash == "earthquakes: queued (request 1); a running worker picks it up"

    def ran() -> list[tuple]:
        return db.query(
            "SELECT r.id, r.trigger, r.status, r.rows, r.dyno, t.requested_by"
            " FROM nightshift.triggers t JOIN nightshift.runs r ON r.id = t.run_id"
            " WHERE t.id = 1 AND r.status <> 'running'"
        )

    [(run_id, kind, state, rows, dyno, requested_by)] = wait_for(ran, 60, "the queued run")
    assert (kind, state, rows, dyno) == ("queued", "succeeded", 151, "worker.1")
    assert requested_by == "status page@test.1"
    browser.refresh()
    row = wait(browser, 'tr[data-job="earthquakes"]')
    assert cells(row)["last"].splitlines()[0] == f"run {run_id} succeeded"
    assert cells(row)["rows"] == "151"
    assert not browser.find_elements(By.CSS_SELECTOR, "p.flash")  # shown once


def test_the_screenshot_is_where_the_readme_shows_it():
    readme = (ROOT / "README.md").read_text()
    assert "![Status page](docs/status-page.png)" in readme
    assert Path(SCREENSHOT).exists()
