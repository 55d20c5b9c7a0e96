"""No secret reaches a printed line: registered values, URL credentials, libpq messages, logs."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from worker import logs, redact
from worker.redact import MASK, register_secret, safe_url

TOKEN = "tok-7Qx9-registered-secret"
URL_PASSWORD = "pw-in-url-9f3k"
DATABASE_URL = f"postgres://app:{URL_PASSWORD}@db.example.com:5432/app"
MASKED_URL = "postgres://***@db.example.com:5432/app"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(autouse=True)
def no_registered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers its own secrets; none leak into the next test."""
    monkeypatch.setattr(redact, "_secrets", set())


# -- redact ------------------------------------------------------------------------------------


def test_a_registered_secret_is_masked_wherever_it_appears():
    register_secret(TOKEN)

    assert redact.redact(f"token={TOKEN}, again:{TOKEN}!") == "token=***, again:***!"


def test_the_longest_registered_secret_is_masked_first_so_no_tail_is_left():
    register_secret("hunter22")
    register_secret("hunter22-and-more")

    assert redact.redact("hunter22-and-more / hunter22") == "*** / ***"


@pytest.mark.parametrize("value", [None, "", "abc"])
def test_none_empty_or_shorter_than_four_characters_is_not_registered(value):
    register_secret(value)

    assert redact.redact("abc abcd") == "abc abcd"


def test_text_without_secrets_is_returned_unchanged():
    assert redact.redact("loaded 151 rows into public.earthquakes") == (
        "loaded 151 rows into public.earthquakes"
    )


def test_a_postgres_url_loses_user_and_password():
    text = f"could not connect to {DATABASE_URL}: timeout"

    assert redact.redact(text) == f"could not connect to {MASKED_URL}: timeout"


def test_a_postgresql_url_with_only_a_user_loses_the_user():
    assert redact.redact("postgresql://u9abc@host/db") == "postgresql://***@host/db"


def test_a_url_without_credentials_is_kept():
    assert redact.redact("GET https://example.com/feed?x=1") == "GET https://example.com/feed?x=1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=h password=s3cr3t dbname=d", "host=h password=*** dbname=d"),
        ("host=h password='s3 cr3t' dbname=d", "host=h password=*** dbname=d"),
        ("host=h password='it\\'s' dbname=d", "host=h password=*** dbname=d"),
        ("host=h PASSWORD = s3cr3t", "host=h PASSWORD = ***"),
    ],
)
def test_a_libpq_keyword_password_is_masked_quoted_or_not(text, expected):
    assert redact.redact(text) == expected


def test_the_role_name_in_a_libpq_authentication_failure_is_masked():
    text = 'FATAL:  password authentication failed for user "u9abc"'

    assert redact.redact(text) == 'FATAL:  password authentication failed for user "***"'


# -- credentials in a query string -------------------------------------------------------------

SENSITIVE_NAMES = [
    "api_key", "apikey", "APIKEY", "apiKey", "Api-Key", "x-api-key", "X_API_KEY", "key",
    "token", "access_token", "accessToken", "refresh_token", "auth.token", "id_token",
    "secret", "client_secret", "client-secret", "clientSecret", "password", "db_password",
    "passwd", "pwd", "signature", "X-Amz-Signature", "sig", "auth", "Authorization",
    "X-Goog-Credential",
]  # fmt: skip
ORDINARY_NAMES = [
    "keyword", "monkey", "hotkey", "keys", "key_id", "tokens_count", "token_type", "tokenizer",
    "authority", "author", "authors_only", "signal", "sigma", "secretary", "passwords",
    "format", "page",
]  # fmt: skip


@pytest.mark.parametrize("name", SENSITIVE_NAMES)
def test_a_credential_query_value_is_masked_first_or_later_in_the_query(name):
    text = f"GET https://h.example.com/v1?{name}=S3cr3t-v4lue&page=2&{name}=again HTTP/1.1"

    assert (
        redact.redact(text) == f"GET https://h.example.com/v1?{name}=***&page=2&{name}=*** HTTP/1.1"
    )


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_an_ordinary_query_parameter_is_kept_beside_a_masked_one(name):
    text = f"/v1/items?{name}=visible&token=S3cr3t-v4lue&{name}=visible-too"

    assert redact.redact(text) == f"/v1/items?{name}=visible&token=***&{name}=visible-too"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/p?token=s3cr3t&page=2", "/p?token=***&page=2"),
        ("/p?token=s3cr3t#frag", "/p?token=***#frag"),
        ("/p?token=s3cr3t HTTP/1.1", "/p?token=*** HTTP/1.1"),
        ("/p?token=s3cr3t\tnext", "/p?token=***\tnext"),
        ("(url='/p?token=s3cr3t'): Retry(total=2)", "(url='/p?token=***'): Retry(total=2)"),
        ('"GET /p?token=s3cr3t" 503', '"GET /p?token=***" 503'),
        ('{"error": "GET /p?token=s3cr3t\\" x"}', '{"error": "GET /p?token=***\\" x"}'),
        ("Retry: /p?token=s3cr3t", "Retry: /p?token=***"),
        ("/p?a=1;token=s3cr3t;b=2", "/p?a=1;token=***"),
        ("/p?a=1&amp;token=s3cr3t&amp;b=2", "/p?a=1&amp;token=***&amp;b=2"),
        ("/cb#access_token=s3cr3t&state=x", "/cb#access_token=***&state=x"),
        ("/p?password=hunter22&page=2&f=json", "/p?password=***&page=2&f=json"),  # not to the end
        ("/l?next=http%3A%2F%2Fh%3Fapi_key%3DS3cr3t x", "/l?next=http%3A%2F%2Fh%3Fapi_key%3D*** x"),
    ],
)
def test_a_credential_value_ends_at_ampersand_hash_space_quote_backslash_or_end(text, expected):
    assert redact.redact(text) == expected


def test_an_empty_credential_value_and_a_name_outside_a_query_are_left_as_they_are():
    text = "/p?token=&page=2; the api_key=setting is documented"

    assert redact.redact(text + " /q?token=s3cr3t") == text + " /q?token=***"


def test_is_sensitive_param_is_the_rule_redact_applies():
    assert [name for name in SENSITIVE_NAMES if not redact.is_sensitive_param(name)] == []
    assert [name for name in ORDINARY_NAMES if redact.is_sensitive_param(name)] == []


# -- safe_url ----------------------------------------------------------------------------------


def test_safe_url_drops_user_and_password_and_keeps_host_port_path_and_query():
    url = "postgres://app:pw@db.example.com:5432/app?sslmode=require"

    assert safe_url(url) == "postgres://db.example.com:5432/app?sslmode=require"


def test_safe_url_masks_sensitive_query_values_and_keeps_the_others():
    url = "https://api.example.com/v1/items?api_key=k123&page=2&token=t456&format=geojson"

    assert safe_url(url) == (
        "https://api.example.com/v1/items?api_key=***&page=2&token=***&format=geojson"
    )


def test_safe_url_keeps_an_ipv6_host_in_brackets():
    assert safe_url("http://u:p@[::1]:8080/feed") == "http://[::1]:8080/feed"


@pytest.mark.parametrize("name", [*SENSITIVE_NAMES, *ORDINARY_NAMES])
def test_safe_url_masks_what_redact_masks_keeps_the_rest_as_written_and_drops_the_fragment(name):
    url = f"https://api.example.com/v1?{name}=v4lue&q=a+b%2F&empty=&token=t456"

    assert safe_url(f"{url}#section") == redact.redact(url)
    assert safe_url(url).endswith("&q=a+b%2F&empty=&token=***")


# -- logs: one JSON object per line, nothing secret --------------------------------------------


@contextlib.contextmanager
def json_logs(log_level: str = "INFO") -> Iterator[io.StringIO]:
    """`logs.configure("json", log_level, ...)` onto a stream; logging as it was afterwards."""
    root = logging.getLogger()
    executors = logging.getLogger("apscheduler.executors")
    handlers, level, executors_level = root.handlers[:], root.level, executors.level
    was_configured, config = structlog.is_configured(), structlog.get_config()
    stream = io.StringIO()  # isatty() is False, as on a Heroku dyno
    try:
        logs.configure("json", log_level, stream)
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        executors.setLevel(executors_level)
        structlog.reset_defaults()
        if was_configured:
            structlog.configure(**config)


def lines(stream: io.StringIO) -> list[dict]:
    """Every line parsed as JSON (a line that is not JSON fails), timestamps checked and dropped."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in parsed:
        assert TIMESTAMP.match(line.pop("timestamp")), line
    return parsed


def assert_no_secret(stream: io.StringIO) -> None:
    output = stream.getvalue()
    assert TOKEN not in output
    assert URL_PASSWORD not in output


def test_a_structlog_event_is_one_json_line_with_secrets_masked():
    register_secret(TOKEN)
    with json_logs() as stream:
        logs.get_logger().info("connecting", url=DATABASE_URL, token=TOKEN, attempt=2)

    assert lines(stream) == [
        {
            "event": "connecting",
            "level": "info",
            "logger": "nightshift",
            "url": MASKED_URL,
            "token": MASK,
            "attempt": 2,
        }
    ]
    assert_no_secret(stream)


def test_a_secret_in_the_event_message_itself_is_masked():
    register_secret(TOKEN)
    with json_logs() as stream:
        logs.get_logger().warning(f"retrying {DATABASE_URL} with {TOKEN}")

    assert lines(stream) == [
        {"event": f"retrying {MASKED_URL} with ***", "level": "warning", "logger": "nightshift"}
    ]


def test_an_apscheduler_stdlib_line_has_the_same_json_shape_with_secrets_masked():
    register_secret(TOKEN)
    with json_logs() as stream:
        logging.getLogger("apscheduler.scheduler").warning(
            "Run time of job %r was missed by %s (%s)", DATABASE_URL, "0:00:05", TOKEN
        )

    assert lines(stream) == [
        {
            "event": f"Run time of job '{MASKED_URL}' was missed by 0:00:05 (***)",
            "level": "warning",
            "logger": "apscheduler.scheduler",
        }
    ]
    assert_no_secret(stream)


def test_structlog_and_stdlib_lines_come_out_in_order_one_object_per_line():
    with json_logs() as stream:
        logs.get_logger().info("first")
        logging.getLogger("apscheduler.scheduler").warning("second")
        logs.get_logger("jobs.earthquakes").error("third")

    assert [(line["event"], line["level"], line["logger"]) for line in lines(stream)] == [
        ("first", "info", "nightshift"),
        ("second", "warning", "apscheduler.scheduler"),
        ("third", "error", "jobs.earthquakes"),
    ]


def test_debug_lines_and_apschedulers_running_job_lines_are_dropped_at_info():
    with json_logs() as stream:
        logs.get_logger().debug("hidden")
        logging.getLogger("apscheduler.scheduler").info("shown")
        logging.getLogger("apscheduler.executors.default").info("Running job x")

    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_an_exception_logged_with_log_exception_has_its_message_redacted():
    register_secret(TOKEN)
    with json_logs() as stream:
        try:
            raise RuntimeError(f"could not connect to {DATABASE_URL} with {TOKEN}")
        except RuntimeError:
            logs.get_logger().exception("connect_failed")

    [line] = lines(stream)
    exception = line.pop("exception")
    assert line == {"event": "connect_failed", "level": "error", "logger": "nightshift"}
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith(f"RuntimeError: could not connect to {MASKED_URL} with ***")
    assert_no_secret(stream)


def test_an_exception_passed_as_a_value_is_one_redacted_line():
    with json_logs() as stream:
        error = ConnectionError(f"could not connect to {DATABASE_URL}")
        logs.get_logger().warning("retrying", error=error)

    assert lines(stream) == [
        {
            "event": "retrying",
            "level": "warning",
            "logger": "nightshift",
            "error": f"ConnectionError: could not connect to {MASKED_URL}",
        }
    ]


def test_an_object_value_is_rendered_as_its_redacted_text_and_numbers_and_dates_are_kept():
    class Where:
        def __str__(self) -> str:
            return "https://api.example.com/v1?api_key=S3cr3t-v4lue&page=2"

    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    with json_logs() as stream:
        logs.get_logger().info("fetching", where=Where(), attempt=2, wait_s=0.5, at=when)

    assert lines(stream) == [
        {
            "event": "fetching",
            "level": "info",
            "logger": "nightshift",
            "where": "https://api.example.com/v1?api_key=***&page=2",
            "attempt": 2,
            "wait_s": 0.5,
            "at": "2024-01-02T03:04:05+00:00",
        }
    ]


def test_secrets_nested_in_a_dict_or_list_value_are_masked():
    register_secret(TOKEN)
    with json_logs() as stream:
        logs.get_logger().info("job_started", params={"url": DATABASE_URL}, tokens=[TOKEN])

    assert lines(stream) == [
        {
            "event": "job_started",
            "level": "info",
            "logger": "nightshift",
            "params": {"url": MASKED_URL},
            "tokens": [MASK],
        }
    ]


# -- urllib3's own lines, at DEBUG: the query and the webhook path -----------------------------


def test_urllib3_debug_and_retry_lines_have_credential_query_values_masked():
    path = "/feed.geojson?api_key=AK-S3cr3t&format=geojson"
    masked = "/feed.geojson?api_key=***&format=geojson"
    with json_logs("DEBUG") as stream:
        pool = logging.getLogger("urllib3.connectionpool")
        retry = logging.getLogger("urllib3.util.retry")
        pool.debug('%s://%s:%s "%s %s %s" %s %s', "http", "h", 80, "GET", path, "HTTP/1.1", 503, 2)
        retry.debug("Incremented Retry for (url='%s'): %r", path, "Retry(total=1)")
        pool.warning("Retrying (%r) after connection broken by '%r': %s", "R", "E", path)

    assert [(line["level"], line["event"]) for line in lines(stream)] == [
        ("debug", f'http://h:80 "GET {masked} HTTP/1.1" 503 2'),
        ("debug", f"Incremented Retry for (url='{masked}'): 'Retry(total=1)'"),
        ("warning", f"Retrying ('R') after connection broken by ''E'': {masked}"),
    ]
    assert "AK-S3cr3t" not in stream.getvalue()


HOOK = "https://h/services/T0X/B0Y/Zt0k3n?channel=ops-alerts"
POST = '"POST /services/T0X/B0Y/Zt0k3n?channel=ops-alerts HTTP/1.1"'


@pytest.mark.parametrize(
    ("url", "line", "expected"),
    [
        (HOOK, f"to {HOOK}", "to ***"),
        (HOOK, POST, '"POST ***?*** HTTP/1.1"'),
        ("http://h/a b/T0k3n", '"POST /a%20b/T0k3n HTTP/1.1"', '"POST *** HTTP/1.1"'),  # quoted
        ("http://h/alert", '"POST /alert"; http://h/alert', '"POST /alert"; ***'),  # too short
    ],
)
def test_a_webhook_url_is_masked_whole_and_its_path_and_query_alone(url, line, expected):
    from worker.alerts import register_webhook_url

    register_webhook_url(url)

    assert redact.redact(line) == expected
