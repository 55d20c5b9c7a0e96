"""Without DATABASE_URL every command uses a local cluster the project starts itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, make_home
from tests.support import Result
from worker.store.migrate import migrations

MAKEFILE = ROOT / "Makefile"


@pytest.fixture
def embedded(feed):
    home = make_home("nightshift-embedded-")
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "NIGHTSHIFT_DATA_DIR": str(home),
        "USGS_FEED_URL": feed.url,
        "LOG_FORMAT": "json",
    }

    def run(*args: str) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "worker", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return Result(done.returncode, done.stdout, done.stderr)

    run.home = home
    run.env = env
    try:
        yield run
    finally:
        subprocess.run(
            [sys.executable, "-m", "worker.database", "stop"], env=env, cwd=ROOT, timeout=60
        )
        shutil.rmtree(home, ignore_errors=True)


def test_migrate_check_and_run_work_on_the_embedded_cluster(embedded):
    migrated = embedded("migrate")
    assert migrated.returncode == 0, migrated.stderr
    names = [f"{version:04d}_{name}" for version, name, _ in migrations()]
    assert f"migrations applied: {', '.join(names)}" in migrated.stdout
    assert "embedded_database_started" in migrated.stderr  # the log says where the data lives
    assert (embedded.home / "pg" / "pgdata" / "PG_VERSION").exists()

    checked = embedded("check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[0].startswith("database:  embedded (host=127.0.0.1")
    assert "ssl:       no" in checked.stdout
    assert "read-only: no (primary)" in checked.stdout
    assert f"schema:    {len(names)}/{len(names)} migrations applied" in checked.stdout

    ran = embedded("run", "earthquakes")
    assert ran.returncode == 0, ran.stderr
    [finished] = ran.events("job_finished")
    assert (finished["status"], finished["rows"]) == ("succeeded", 151)
    [started] = ran.events("job_started")
    assert started["database"].startswith("embedded")

    runs = embedded("runs", "earthquakes")
    assert runs.returncode == 0
    assert " succeeded " in runs.stdout.splitlines()[1]


def test_make_db_stop_stops_the_cluster_in_one_line_without_a_warning(embedded):
    assert embedded("migrate").returncode == 0
    recipe = re.search(r"^db-stop:.*\n\t\$\(BIN\)/python (.+)$", MAKEFILE.read_text(), re.M)
    assert recipe is not None, "the Makefile's db-stop recipe"

    stopped = subprocess.run(
        [sys.executable, *recipe[1].split()], env=embedded.env, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert stopped.returncode == 0
    assert (stopped.stdout, stopped.stderr) == ("embedded PostgreSQL stopped\n", "")
    status = subprocess.run(
        [sys.executable, "-m", "worker.database", "status"], env=embedded.env, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.stdout.startswith("embedded PostgreSQL: stopped at ")
