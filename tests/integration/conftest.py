"""Fixtures for the integration tests: a plain psycopg2 session on the test's database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest


@pytest.fixture
def conn(db) -> Iterator[Any]:
    """A session as the app role, not autocommit; closed after the test."""
    connection = psycopg2.connect(db.url)
    try:
        yield connection
    finally:
        connection.close()
