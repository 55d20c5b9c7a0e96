"""Alerts: one POST to ALERT_WEBHOOK_URL per failed run or run with refused rows (Slack-ready).

A webhook that fails is logged and forgotten: an alert must never fail the job or the worker.
The URL itself is a secret (Slack's carries its token in the path): it is masked in every line,
and so are its path and query on their own, as urllib3's DEBUG lines show only those.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import requote_uri

from config import Settings
from worker.logs import get_logger
from worker.redact import redact, register_secret

log = get_logger("nightshift.alerts")
TIMEOUT_SECONDS = 5
# A path or query this long may hold a token ("/services/T…/B…/…"); "/alert" does not.
MIN_TOKEN_LENGTH = 8


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
    return {
        "text": text,
        "job": result.job,
        "run_id": result.run_id,
        "status": result.status,
        "error": error,
        "rejected": rejected,
        "dyno": dyno,
    }


def send_failure_alert(settings: Settings, result: Any) -> bool:
    """POST the failure once. True when the webhook took it; never raises."""
    url = settings.alert_webhook_url or ""
    register_webhook_url(url)
    try:
        response = requests.post(
            url, json=failure_message(result, settings.dyno), timeout=TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        log.warning("alert_failed", reason=type(exc).__name__, host=_host(url))
        return False
    if response.status_code >= 300:
        log.warning("alert_failed", reason=f"answered {response.status_code}", host=_host(url))
        return False
    log.info("alert_sent", host=_host(url))
    return True


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
