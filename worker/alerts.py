"""Alerts: a POST to ALERT_WEBHOOK_URL (Slack-ready) when a run fails or refuses rows, and one
"recovered" message when a job succeeds again after failed runs.

A webhook that is down, slow or busy is tried again, within a bound: connection errors,
timeouts, 5xx and 429 (its Retry-After honoured, up to ALERT_MAX_DELAY), at most ALERT_ATTEMPTS
times, all of a run's alerts within ALERT_DEADLINE seconds; a shutdown ends the waits. Each
failed attempt is logged (`alert_failed`) and, in the end, forgotten: an alert never fails the
job or the worker. The URL itself is a secret (Slack's carries its token in the path): it is
masked in every line, and so are its path and query on their own, as urllib3's DEBUG lines show
only those; a log line names the host alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import requote_uri

from config import Settings
from worker.errors import ShutdownRequested
from worker.logs import get_logger
from worker.redact import redact, register_secret
from worker.source.retry import retry_after
from worker.text import slack

log = get_logger("nightshift.alerts")
# One attempt's connect and read timeout (less when less of the bound is left).
TIMEOUT_SECONDS = 5
# An attempt with less of the bound left than this is not worth starting.
MIN_ATTEMPT_SECONDS = 0.5
# The run history (how many failed in a row) is asked for at most this long, and at most half
# the time ALERT_DEADLINE leaves: the alert it decides on must still have time to go.
HISTORY_SECONDS = 5.0
# A path or query this long may hold a token ("/services/T…/B…/…"); "/alert" does not.
MIN_TOKEN_LENGTH = 8
# What is worth another attempt: the webhook did not answer, or said "later".
_RETRIED_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def message(text: str, **fields: Any) -> dict[str, Any]:
    """A webhook payload: `text` for people, beside `fields`, plain data for machines (`job`,
    `error`… as they are). Every message is made here, so that its `text` is Slack-escaped
    whole (`&`, `<`, `>`): a job name, an error or a dyno cannot ping `<!channel>` or
    disguise a link; our own wording uses none of the three. Redacted first, like any line."""
    return {"text": slack(redact(text)), **fields}


def failure_message(result: Any, dyno: str) -> dict[str, Any]:
    run = f"run {result.run_id}" if result.run_id else "a run that could not be recorded"
    rejected = getattr(result, "rejected", 0)
    if result.status == "failed":
        error = redact(result.error or "unknown error")
        text = f":rotating_light: Nightshift job {result.job} failed ({run} on {dyno}): {error}"
    else:  # it succeeded, setting refused rows aside
        error = None
        text = (
            f":warning: Nightshift job {result.job} loaded {result.rows} row(s) and"
            f" {rejected} row(s) refused ({run} on {dyno});"
            f" see `python -m worker rejects {result.job}`"
        )
    return message(
        text,
        alert="failed" if result.status == "failed" else "rejected",
        job=result.job,
        run_id=result.run_id,
        status=result.status,
        error=error,
        rejected=rejected,
        dyno=dyno,
    )


def recovered_message(result: Any, dyno: str, failed_runs: int) -> dict[str, Any]:
    """The all-clear: the job succeeded after `failed_runs` failed runs in a row."""
    text = (
        f":white_check_mark: Nightshift job {result.job} recovered (run {result.run_id} on"
        f" {dyno}) after {failed_runs} failed run(s)"
    )
    return message(
        text,
        alert="recovered",
        job=result.job,
        run_id=result.run_id,
        status=result.status,
        error=None,
        rejected=getattr(result, "rejected", 0),
        dyno=dyno,
        failed_runs=failed_runs,
    )


def send_run_alerts(
    settings: Settings,
    result: Any,
    failed_runs_before: Callable[[float], int],
    stop: threading.Event | None = None,
) -> None:
    """The alerts a run's end calls for; never raises, and returns within ALERT_DEADLINE s
    (give or take one attempt's last read).

    One alert per failure streak: a failed run alerts when it is the first of its job's failed
    runs in a row (none since the last success); the next ones log `alert_held` instead. A run
    that succeeded after failed runs says "recovered", once: the next success finds no failed
    run before it. `failed_runs_before(budget)` counts them (from the run history), within
    `budget` seconds; a count that cannot be had counts none (better one alert too many than
    a failure unsaid). A success that refused rows recovers too, then warns of its rows.
    """
    if not settings.alert_webhook_url:
        return
    delivery = Delivery(settings, stop)
    try:
        counted = result.run_id is not None and result.status in ("succeeded", "failed")
        failed_runs = delivery.count(failed_runs_before) if counted else 0
        if result.status == "succeeded" and failed_runs:
            delivery.post(recovered_message(result, settings.dyno, failed_runs))
        if result.status == "failed" and failed_runs:
            log.info(
                "alert_held", alert="failed", job=result.job, run_id=result.run_id,
                failed_runs=failed_runs + 1, reason="alerted at the first failed run in a row",
            )  # fmt: skip
        elif result.status == "failed" or getattr(result, "rejected", 0):
            delivery.post(failure_message(result, settings.dyno))
    except Exception as exc:  # a bug of ours: still never the run's or the worker's failure
        log.error("alert_failed", reason=f"unexpected {type(exc).__name__}", host=delivery.host)


def refused_message(refusal: Any, dyno: str) -> dict[str, Any]:
    """A request (or a resume) that no run can serve, settled as a `refused` run: said once."""
    text = (
        f":no_entry: Nightshift job {refusal.job}: {refusal.error}"
        f" (run {refusal.run_id} on {dyno}); the job's next requests run"
    )
    return message(
        text,
        alert="refused",
        job=refusal.job,
        run_id=refusal.run_id,
        status="refused",
        error=redact(refusal.error),
        rejected=0,
        dyno=dyno,
        request_id=refusal.request_id,
    )


def send_refused_alert(
    settings: Settings, refusal: Any, stop: threading.Event | None = None
) -> None:
    """The one alert of a refused request or resume (worker.run.refusals.Refusal); never
    raises, and returns within ALERT_DEADLINE s. Not part of the job's failure streak: the
    job itself may work, and a refusal neither opens a streak nor earns a "recovered"."""
    if not settings.alert_webhook_url:
        return
    delivery = Delivery(settings, stop)
    try:
        delivery.post(refused_message(refusal, settings.dyno))
    except Exception as exc:  # a bug of ours: never the worker's failure
        log.error("alert_failed", reason=f"unexpected {type(exc).__name__}", host=delivery.host)


class Delivery:
    """A run's alerts on their way: each tried up to ALERT_ATTEMPTS times, all of them within
    ALERT_DEADLINE seconds from here; `stop` (a shutdown) ends any wait between attempts."""

    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.url = settings.alert_webhook_url or ""
        register_webhook_url(self.url)
        self.host = _host(self.url)
        self.stop = stop or threading.Event()
        self.deadline = time.monotonic() + settings.alert_deadline

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def count(self, lookup: Callable[[float], int]) -> int:
        """`lookup(budget)`, or 0 when it cannot answer in time (no all-clear then, and a
        failed run alerts). Its budget leaves the alerts their time: a run that failed because
        the database is out of reach still gets its alert out."""
        budget = min(self.left() / 2, HISTORY_SECONDS)
        try:
            return lookup(max(budget, MIN_ATTEMPT_SECONDS))
        except (Exception, ShutdownRequested) as exc:
            log.warning("alert_history_unavailable", error=redact(str(exc)) or type(exc).__name__)
            return 0

    def post(self, message: dict[str, Any]) -> bool:
        """POST `message`, trying again while it is worth it. True when the webhook took it."""
        alert = message["alert"]
        for attempt in range(1, self.settings.alert_attempts + 1):
            if self.left() < MIN_ATTEMPT_SECONDS:
                return self._abandoned(alert, attempt - 1, self._out_of_time())
            reason, retried, asked = self._attempt(message, min(TIMEOUT_SECONDS, self.left()))
            if reason is None:
                log.info("alert_sent", alert=alert, attempt=attempt, host=self.host)
                return True
            wait = self._wait(attempt, asked)
            fields = {"alert": alert, "attempt": attempt, "reason": reason, "host": self.host}
            gave_up = self._gives_up(attempt, retried, wait)
            if gave_up:
                log.warning("alert_failed", **fields, gave_up=gave_up)
                return False
            log.warning("alert_failed", **fields, retry_in_s=round(wait, 3))
            if self.stop.wait(wait):
                return self._abandoned(alert, attempt, "shutdown requested")
        return False  # not reached: the last attempt gives up

    def _attempt(self, message: dict[str, Any], timeout: float) -> tuple[str | None, bool, Any]:
        """One POST: (why it failed or None, whether that is worth another attempt, the
        Retry-After it asked for in seconds or None). The body is never read: nothing we need
        is in it, and a webhook trickling one cannot hold us."""
        try:
            response = requests.post(self.url, json=message, timeout=timeout, stream=True)
        except _RETRIED_ERRORS as exc:
            return type(exc).__name__, True, None
        except requests.RequestException as exc:  # a malformed URL, say: no point in trying again
            return type(exc).__name__, False, None
        with response:
            status = response.status_code
            if status < 300:
                return None, False, None
            retried = status == 429 or status >= 500
            asked = retry_after(response.headers.get("Retry-After")) if retried else None
            return f"answered {status}", retried, asked

    def _wait(self, attempt: int, asked: float | None) -> float:
        """Doubling from ALERT_RETRY_DELAY, or what a Retry-After asked; at most ALERT_MAX_DELAY."""
        backoff = self.settings.alert_retry_delay * 2 ** (attempt - 1)
        return min(backoff if asked is None else asked, self.settings.alert_max_delay)

    def _gives_up(self, attempt: int, retried: bool, wait: float) -> str | None:
        """Why no other attempt follows a failed one (None: one does, after `wait` s)."""
        if not retried:
            return "not retried"
        if attempt >= self.settings.alert_attempts:
            return f"{attempt} attempt(s) made"
        if self.left() - wait < MIN_ATTEMPT_SECONDS:
            return self._out_of_time()
        if self.stop.is_set():
            return "shutdown requested"
        return None

    def _out_of_time(self) -> str:
        return f"no time left within ALERT_DEADLINE ({self.settings.alert_deadline:g} s)"

    def _abandoned(self, alert: str, attempts: int, why: str) -> bool:
        log.warning("alert_abandoned", alert=alert, attempts=attempts, reason=why, host=self.host)
        return False


def register_webhook_url(url: str) -> None:
    """Mask the webhook URL, and its path and query wherever they appear alone."""
    register_secret(url)
    parts = urlsplit(url)
    for part in (parts.path, parts.query):
        if len(part) >= MIN_TOKEN_LENGTH:
            register_secret(part)
            register_secret(requote_uri(part))  # as requests sends it, and urllib3 logs it


def _host(url: str) -> str:
    """Where the alert went, for the log: host and port only (the path may hold a token)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "?"
