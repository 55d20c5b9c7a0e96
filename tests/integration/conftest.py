"""Fixtures for the integration tests: a plain psycopg2 session on the test's database, and a
minimal job of the tests' own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from worker.registry import Job


@pytest.fixture
def conn(db) -> Iterator[Any]:
    """A session as the app role, not autocommit; closed after the test."""
    connection = psycopg2.connect(db.url)
    try:
        yield connection
    finally:
        connection.close()


def items_job() -> Job:
    """A job declaring one text key, yielding nothing: for tests of a run's opening."""
    return Job(
        name="items",
        function=lambda ctx: iter(()),
        table="items",
        columns={"id": "text"},
        key=("id",),
    )
