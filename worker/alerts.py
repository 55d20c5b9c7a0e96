"""Failure alerts: one POST to ALERT_WEBHOOK_URL per failed run, Slack-compatible.

A webhook that fails is logged and forgotten: an alert must never fail the job or the worker.
The URL itself is a secret (Slack's carries its token in the path): it is masked in every line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from config import Settings
from worker.logs import get_logger
from worker.redact import redact, register_secret

log = get_logger("nightshift.alerts")
TIMEOUT_SECONDS = 5


def failure_message(result: Any, dyno: str) -> dict[str, Any]:
    run = f"run {result.run_id}" if result.run_id else "a run that could not be recorded"
    error = redact(result.error or "unknown error")
    return {
        "text": f":rotating_light: Nightshift job {result.job} failed ({run} on {dyno}): {error}",
        "job": result.job,
        "run_id": result.run_id,
        "status": result.status,
        "error": error,
        "dyno": dyno,
    }


def send_failure_alert(settings: Settings, result: Any) -> bool:
    """POST the failure once. True when the webhook took it; never raises."""
    url = settings.alert_webhook_url or ""
    register_secret(url)
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


def _host(url: str) -> str:
    """Where the alert went, for the log: host and port only (the path may hold a token)."""
    return urlsplit(url).netloc.rpartition("@")[2] or "?"
