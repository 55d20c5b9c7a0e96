"""Fixtures shared by the acceptance tests that inject faults mid-load."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import APP_USER, PASSWORD, Database, make_home, start_cluster
from tests.faults import discard
from tests.support import LogTail, synthetic_feed

ROWS, BATCH = 3000, "500"


@dataclass
class Run:
    process: subprocess.Popen
    tail: LogTail

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        stderr = self.process.stderr.read()
        self.tail.text()
        return code, stderr

    def retries(self) -> list[dict]:
        return self.tail.events("db_retry")

    def causes(self) -> set[str]:
        return {line["cause"] for line in self.retries()}

    def output(self) -> str:
        return "".join(self.tail.raw)


@pytest.fixture
def load(cli, feed):
    """Start `run earthquakes` on a synthetic feed of ROWS events in batches of BATCH."""
    document = synthetic_feed(ROWS)
    feed.serve(document)
    runs: list[Run] = []

    def start(**env: str) -> Run:
        process = cli.spawn("run", "earthquakes", BATCH_SIZE=BATCH, **env)
        run = Run(process, LogTail(process.stdout))
        runs.append(run)
        return run

    start.document = document
    yield start
    for run in runs:
        run.process.kill()
        run.process.wait(timeout=10)


@pytest.fixture
def own() -> Iterator[Database]:
    """A cluster of this test's own (to stop, restart or fail over), with the app role."""
    cluster = start_cluster(make_home("nightshift-own-"))
    cluster.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{PASSWORD}'")
    cluster.psql(f"CREATE DATABASE app OWNER {APP_USER}")
    db = Database(cluster, "app")
    try:
        yield db
    finally:
        db.close()
        discard(cluster)
