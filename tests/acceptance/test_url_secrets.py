"""A credential in a source URL's query, or a webhook's path, reaches no output at any level.

urllib3 logs the request path (query included) at DEBUG and on every retry; these tests run the
real CLI at LOG_LEVEL=DEBUG so that every one of those lines is written, and look for the
distinctive values everywhere: stdout, stderr, `nightshift.runs`, `runs --json`, the alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import WebhookServer

API_KEY = "AK-dist1nct-query-s3cret-77"  # distinctive: any occurrence in output is a leak
WEBHOOK_PATH = "/services/T0DISTINCT/B0DISTINCT/XXDISTINCTTOKEN"
WEBHOOK_FRAGMENTS = ("T0DISTINCT", "B0DISTINCT", "XXDISTINCTTOKEN")


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


def test_an_api_key_in_the_feed_query_is_masked_in_every_line_error_record_and_alert(
    cli, db, feed, webhook
):
    feed.fail(503)  # every attempt: urllib3 retries (HTTP_RETRIES=2) and logs each one
    url = f"{feed.url}?api_key={API_KEY}&format=geojson"

    result = cli(
        "run",
        "earthquakes",
        LOG_LEVEL="DEBUG",
        HTTP_RETRIES="2",
        USGS_FEED_URL=url,
        ALERT_WEBHOOK_URL=webhook.url,
    )

    assert result.returncode == 1
    assert feed.requests == 3
    masked = f"{feed.url}?api_key=***&format=geojson"
    path = masked.split("127.0.0.1", 1)[1].split("/", 1)[1]
    error = f"source: GET {masked} answered 503 Service Unavailable"
    assert result.stderr.strip() == f"error: earthquakes failed: {error}"
    [finished] = result.events("job_finished")
    assert (finished["status"], finished["error"]) == ("failed", error)
    urllib3 = [line["event"] for line in result.logs if line["logger"].startswith("urllib3")]
    # Each attempt: the request line; each retry: "Incremented Retry" and "Retry:" lines.
    requests = [e for e in urllib3 if e.endswith(f'"GET /{path} HTTP/1.1" 503 2')]
    increments = [e for e in urllib3 if e.startswith(f"Incremented Retry for (url='/{path}')")]
    retries = [e for e in urllib3 if e == f"Retry: /{path}"]
    assert (len(requests), len(increments), len(retries)) == (3, 2, 2)
    # Those 7, job_finished, and any other line naming the URL: every one masked.
    naming = [line for line in result.stdout.splitlines() if "api_key=" in line]
    assert [line for line in naming if "api_key=***" not in line] == []
    assert len(naming) >= 8
    assert API_KEY not in result.stdout + result.stderr

    [(recorded,)] = db.query("SELECT error FROM nightshift.runs")
    assert recorded == error
    history = cli("runs", "--json")
    assert history.returncode == 0
    [run] = json.loads(history.stdout)
    assert run["error"] == error
    assert API_KEY not in history.stdout + history.stderr
    [alert] = webhook.received
    assert alert["error"] == error
    assert API_KEY not in json.dumps(alert)


def test_a_webhook_path_is_masked_at_debug_and_the_alert_still_arrives(cli, db, feed, webhook):
    feed.fail(500)
    url = webhook.origin + WEBHOOK_PATH

    result = cli("run", "earthquakes", LOG_LEVEL="DEBUG", HTTP_RETRIES="0", ALERT_WEBHOOK_URL=url)

    assert result.returncode == 1
    [alert] = webhook.received
    [run] = db.runs()
    assert (alert["job"], alert["run_id"]) == ("earthquakes", run["id"])
    assert alert["error"] == run["error"]
    assert alert["error"].endswith("answered 500 Internal Server Error")
    assert len(result.events("alert_sent")) == 1
    [post] = [
        line["event"]
        for line in result.logs
        if line["logger"] == "urllib3.connectionpool" and '"POST ' in line["event"]
    ]
    assert post.endswith('"POST *** HTTP/1.1" 200 2')
    output = result.stdout + result.stderr
    for fragment in WEBHOOK_FRAGMENTS:
        assert fragment not in output


def test_a_token_in_a_refused_feed_url_is_masked_in_urllib3s_retry_warning_and_the_error(cli, db):
    url = f"http://127.0.0.1:9/feed.json?page=1&access_token={API_KEY}"

    result = cli("run", "earthquakes", USGS_FEED_URL=url, HTTP_RETRIES="1")

    assert result.returncode == 1
    [retry] = [line for line in result.logs if line["logger"] == "urllib3.connectionpool"]
    assert retry["level"] == "warning"
    assert retry["event"].startswith("Retrying (Retry(total=0, ")
    assert retry["event"].endswith(": /feed.json?page=1&access_token=***")
    error = "source: GET http://127.0.0.1:9/feed.json?page=1&access_token=*** failed: "
    assert db.runs()[-1]["error"] == error + "[Errno 111] Connection refused"
    assert result.stderr.strip() == f"error: earthquakes failed: {db.runs()[-1]['error']}"
    assert API_KEY not in result.stdout + result.stderr
