"""Settings come only from the environment, and a bad value fails at start naming its variable."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from config import PROJECT_ROOT, ConfigError, Settings
from worker.web import create_app


def test_an_empty_environment_gives_every_default():
    assert Settings.from_env({}) == Settings(
        database_url=None,
        data_dir=PROJECT_ROOT / ".data",
        batch_size=10_000,
        batch_max_bytes=4 * 1024 * 1024,
        http_connect_timeout=10.0,
        http_read_timeout=60.0,
        http_retries=3,
        db_connect_timeout=5,
        db_statement_timeout_ms=300_000,
        shutdown_grace_seconds=20.0,
        log_format="auto",
        log_level="INFO",
        dyno=os.uname().nodename,
    )


def test_blank_values_count_as_unset():
    env = {"DATABASE_URL": "  ", "BATCH_SIZE": "", "LOG_FORMAT": " ", "DYNO": ""}

    assert Settings.from_env(env) == Settings.from_env({})


def test_every_variable_is_read_into_its_setting():
    env = {
        "DATABASE_URL": "postgres://app:pw@db.example.com:5432/app",
        "NIGHTSHIFT_DATA_DIR": "/tmp/nightshift-data",
        "BATCH_SIZE": "500",
        "HTTP_CONNECT_TIMEOUT": "2.5",
        "HTTP_READ_TIMEOUT": "30",
        "HTTP_RETRIES": "5",
        "DB_CONNECT_TIMEOUT": "4",
        "DB_STATEMENT_TIMEOUT_MS": "60000",
        "SHUTDOWN_GRACE_SECONDS": "12.5",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "WARNING",
        "DYNO": "worker.1",
    }

    assert Settings.from_env(env) == Settings(
        database_url="postgres://app:pw@db.example.com:5432/app",
        data_dir=Path("/tmp/nightshift-data"),
        batch_size=500,
        http_connect_timeout=2.5,
        http_read_timeout=30.0,
        http_retries=5,
        db_connect_timeout=4,
        db_statement_timeout_ms=60_000,
        shutdown_grace_seconds=12.5,
        log_format="console",
        log_level="WARNING",
        dyno="worker.1",
    )


def test_values_are_stripped_of_surrounding_whitespace():
    settings = Settings.from_env({"BATCH_SIZE": " 250 ", "DYNO": " run.42 "})

    assert (settings.batch_size, settings.dyno) == (250, "run.42")


def test_log_format_and_log_level_are_case_insensitive():
    settings = Settings.from_env({"LOG_FORMAT": "JSON", "LOG_LEVEL": "debug"})

    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")


def test_zero_retries_and_no_statement_timeout_are_allowed():
    settings = Settings.from_env({"HTTP_RETRIES": "0", "DB_STATEMENT_TIMEOUT_MS": "0"})

    assert (settings.http_retries, settings.db_statement_timeout_ms) == (0, 0)


def test_the_database_url_is_not_in_the_settings_repr():
    settings = Settings.from_env({"DATABASE_URL": "postgres://app:pw-zz9@db.example.com/app"})

    assert "pw-zz9" not in repr(settings)
    assert "db.example.com" not in repr(settings)


def test_settings_are_frozen():
    settings = Settings.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BATCH_SIZE", "0", "BATCH_SIZE must be at least 1, got 0"),
        ("BATCH_SIZE", "-5", "BATCH_SIZE must be at least 1, got -5"),
        ("BATCH_SIZE", "abc", "BATCH_SIZE must be a whole number, got 'abc'"),
        ("BATCH_SIZE", "1.5", "BATCH_SIZE must be a whole number, got '1.5'"),
        ("HTTP_RETRIES", "-1", "HTTP_RETRIES must be at least 0, got -1"),
        ("DB_CONNECT_TIMEOUT", "0", "DB_CONNECT_TIMEOUT must be at least 1, got 0"),
        (
            "DB_STATEMENT_TIMEOUT_MS",
            "5s",
            "DB_STATEMENT_TIMEOUT_MS must be a whole number, got '5s'",
        ),
        ("HTTP_READ_TIMEOUT", "-1", "HTTP_READ_TIMEOUT must be positive, got -1"),
        ("HTTP_CONNECT_TIMEOUT", "0", "HTTP_CONNECT_TIMEOUT must be positive, got 0"),
        ("HTTP_CONNECT_TIMEOUT", "ten", "HTTP_CONNECT_TIMEOUT must be a number, got 'ten'"),
        ("SHUTDOWN_GRACE_SECONDS", "-3", "SHUTDOWN_GRACE_SECONDS must be positive, got -3"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of auto, json, console, got 'xml'"),
        (
            "LOG_LEVEL",
            "verbose",
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'verbose'",
        ),
    ],
)
def test_an_invalid_value_raises_config_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})

    assert str(raised.value) == message


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_timeout_that_is_not_a_finite_number_raises_config_error(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"HTTP_READ_TIMEOUT": value})

    assert str(raised.value).startswith("HTTP_READ_TIMEOUT ")


def test_a_short_status_password_is_read_as_given_so_a_worker_still_starts():
    settings = Settings.from_env({"STATUS_PASSWORD": " Sh0rt-Pa55! "})

    assert settings.status_password == "Sh0rt-Pa55!"
    assert "Sh0rt-Pa55!" not in repr(settings)


@pytest.mark.parametrize("password", ["Sh0rt-Pa55!", " Sh0rt-Pa55! ", "x"])
def test_the_status_page_refuses_a_password_shorter_than_12_characters(password):
    settings = Settings.from_env({"STATUS_PASSWORD": password})

    with pytest.raises(ConfigError) as raised:
        create_app(settings, jobs={})

    assert str(raised.value) == (
        "STATUS_PASSWORD is too short: the status page needs at least 12 characters"
        " (make one with `openssl rand -base64 24`)"
    )


def test_the_status_page_accepts_a_password_of_exactly_12_characters():
    app = create_app(Settings.from_env({"STATUS_PASSWORD": "Tw3lve-Chars"}), jobs={})

    assert app.config["SESSION_COOKIE_NAME"] == "nightshift_status"
