"""No secret reaches a printed line: registered values, URL credentials, libpq messages, logs."""

from __future__ import annotations

import contextlib
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


# -- logs: one JSON object per line, nothing secret --------------------------------------------


@contextlib.contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """`logs.configure("json", ...)` onto a stream; logging as it was afterwards."""
    root = logging.getLogger()
    executors = logging.getLogger("apscheduler.executors")
    handlers, level, executors_level = root.handlers[:], root.level, executors.level
    was_configured, config = structlog.is_configured(), structlog.get_config()
    stream = io.StringIO()  # isatty() is False, as on a Heroku dyno
    try:
        logs.configure("json", "INFO", stream)
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
