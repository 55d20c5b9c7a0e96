"""Recovery benchmark: how soon the worker commits again after the database fails under it.

`.venv/bin/python bench/recovery.py [--repeat N] [--fault NAME] [--json]` from the project root.

The real CLI (`python -m worker run earthquakes`, 3,000 synthetic events, BATCH_SIZE=500) runs
with the worker's DEFAULT retry and timeout settings (no DB_* variable in its environment)
against a throwaway cluster of its own per run. As in tests/test_resilience.py, a gate stops
the third batch in front of its INSERT and the fault is injected while it waits there:

- termination: pg_terminate_backend of the worker's session; the URL does not change;
- restart: pg_ctl stop -m fast, then start;
- rotation: a new password and the role's sessions ended; the Platform API stand-in keeps
  serving the old URL until the worker has failed to log in with it, then the new one;
- failover: the primary stopped (immediate), its streaming replica promoted, the API's URL moved.

Recovery runs from "the new URL is available" to "the next batch committed".
- Committed: the clusters run with track_commit_timestamp=on, and every row of a batch carries
  its transaction's id (xmin), so pg_xact_commit_timestamp(xmin) is the server's own record of
  the instant that batch's COMMIT happened. Nothing is polled and nothing is added to the
  measured transaction; the replica gets the same setting, so it holds after a failover too.
- Available: time.time() in this process right after the action (the kill, api.set); for the
  restart, the server's own "ready to accept connections" log line (epoch ms, log_line_prefix
  %n), since `pg_ctl start -w` polls every 100 ms and reports it late. Server and client run
  on one machine and read the same system clock, so the two instants compare directly.
The baseline is the median interval between two consecutive batch commits of a fault-free run
(the gate installed and open, so each batch pays the same trigger), measured the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from config import Settings  # noqa: E402
from tests.conftest import (  # noqa: E402
    APP_USER,
    PASSWORD,
    Cli,
    Database,
    Gate,
    make_home,
    start_cluster,
)
from tests.faults import HerokuApi, catch_up, discard, make_replica, promote  # noqa: E402
from tests.support import FeedServer, LogTail, synthetic_feed, wait_for  # noqa: E402
from worker.database.embedded import Cluster, find_bindir  # noqa: E402

ROWS, BATCH, GATE_AT = 3000, 500, 1000  # the third batch waits at the gate
FAULTS = ("termination", "restart", "rotation", "failover")
TARGET_SECONDS = 3.0  # the target: back to loading within 3 s of a new URL, each fault
TOKEN = "HRKU-bench-recovery-api-token"
NEW_PASSWORD = "Rotated-bench-n1ghtshift-S3CRET"
APP = "nightshift"
RUN_TIMEOUT = 120.0
SERVER_SETTINGS = {"track_commit_timestamp": "on", "log_line_prefix": "%n:"}

# One row per batch transaction: when it committed (server clock) and how many rows it wrote.
COMMITS = """
SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS committed, count(*)
FROM earthquakes GROUP BY xmin, committed ORDER BY committed NULLS FIRST
"""


def fail(message: str) -> NoReturn:
    raise SystemExit(f"recovery bench FAILED: {message}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Sample:
    """One run of the worker: what it did, and (with a fault) how long it took to recover."""

    fault: str  # "none" for the baseline
    round: int
    exit_code: int
    reconnects: int
    rows: int
    commits: list[float | None]  # each batch's COMMIT (epoch s), None where the server forgot
    available: float | None = None
    recovery: float | None = None
    asleep: float | None = None  # backoff sleep after the URL was available
    reconnecting: float | None = None  # the rest until db_reconnected: resolve, connect, set up
    replay: float | None = None  # db_reconnected to the replayed batch's COMMIT
    late_by: float | None = None  # restart: pg_ctl start returned this long after ready
    retries: int = 0
    causes: list[str] = field(default_factory=list)


@dataclass
class Scene:
    """What an injected fault acts on."""

    db: Database  # the primary, as superuser
    gate: Gate
    tail: LogTail
    process: subprocess.Popen
    api: HerokuApi | None = None
    replica: Cluster | None = None
    new_primary: Database | None = None
    late_by: float | None = None  # restart: how long after ready `pg_ctl start` returned


# -- the faults: each acts on the waiting session `pid`; returns when the new URL is available
def wait_at_gate(scene: Scene) -> int:
    """The pid of the worker's session once its batch waits at the gate after GATE_AT rows."""

    def blocked() -> list[int]:
        if scene.process.poll() is not None:
            stderr = scene.process.stderr.read() if scene.process.stderr else ""
            fail(
                f"the worker exited ({scene.process.returncode}) before reaching the gate:"
                f" {stderr.strip()} {''.join(scene.tail.raw[-3:])}"
            )
        count = scene.db.scalar("SELECT count(*) FROM earthquakes")
        return scene.gate.waiting() if count == GATE_AT else []

    [pid] = wait_for(blocked, timeout=60, what=f"a batch waiting at the gate after {GATE_AT}")
    return pid


def terminate(scene: Scene, pid: int) -> float:
    scene.db.query("SELECT pg_terminate_backend(%s)", (pid,))
    available = time.time()
    scene.gate.open()
    return available


def restart(scene: Scene, pid: int) -> float:
    cluster = scene.db.cluster
    stopped = time.time()
    cluster.stop("fast")
    cluster.start(*cluster.options)  # type: ignore[attr-defined]
    returned = time.time()
    ready = ready_since(cluster, stopped)
    scene.late_by = returned - ready
    return ready


def ready_since(cluster: Cluster, since: float) -> float:
    """When the server last said it accepts connections (its log, epoch ms), after `since`."""
    marker = ":LOG:  database system is ready to accept connections"
    instants = [
        float(line.split(":", 1)[0])
        for line in cluster.log.read_text(errors="replace").splitlines()
        if line.endswith(marker)
    ]
    after = [t for t in instants if t >= since - 0.001]
    if not after:
        fail(f"no 'ready to accept connections' line after the restart in {cluster.log}")
    return after[-1]


def rotate(scene: Scene, pid: int) -> float:
    assert scene.api is not None
    scene.db.query(f"ALTER ROLE {APP_USER} PASSWORD '{NEW_PASSWORD}'")
    scene.db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (APP_USER,)
    )
    scene.gate.open()
    # The platform takes a moment to publish the new URL: the old one fails at least once.
    poll(
        lambda: any(r["cause"] == "auth_failed" for r in scene.tail.events("db_retry")),
        timeout=30,
        what="the worker to fail authentication with the old URL",
    )
    scene.api.set("DATABASE_URL", scene.db.url.replace(PASSWORD, NEW_PASSWORD))
    return time.time()


def fail_over(scene: Scene, pid: int) -> float:
    assert scene.api is not None and scene.replica is not None and scene.new_primary is not None
    catch_up(scene.db.cluster, scene.replica)  # what committed is on the replica too
    scene.db.cluster.stop("immediate")
    promote(scene.replica)
    scene.api.set("DATABASE_URL", scene.new_primary.url)
    return time.time()


INJECT: dict[str, Callable[[Scene, int], float]] = {
    "termination": terminate,
    "restart": restart,
    "rotation": rotate,
    "failover": fail_over,
}


def poll(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Every 5 ms until true; `wait_for` sleeps 50 ms, too coarse to catch a backoff early."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


# -- one run ---------------------------------------------------------------------------------
def run_once(fault: str, round_: int, feed: FeedServer, ids: list[str]) -> Sample:
    """A fresh cluster, the CLI run through `fault` (or none), checked and measured."""
    with contextlib.ExitStack() as stack:
        cluster = start_cluster(make_home("nightshift-bench-recovery-"), **SERVER_SETTINGS)
        stack.callback(discard, cluster)
        cluster.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{PASSWORD}'")
        cluster.psql(f"CREATE DATABASE app OWNER {APP_USER}")
        db = Database(cluster, "app")
        stack.callback(db.close)
        replica = new_primary = None
        if fault == "failover":
            replica = make_replica(cluster)
            stack.callback(discard, replica)
            new_primary = Database(replica, "app")
            stack.callback(new_primary.close)
        cli = Cli(db, feed)
        migrated = cli("migrate", DATABASE_URL=db.url)
        if migrated.returncode != 0:
            fail(f"{fault}: migrate exited {migrated.returncode}: {migrated.stderr.strip()}")
        env = {"BATCH_SIZE": str(BATCH), "DYNO": "bench.1"}
        api = None
        if fault in ("rotation", "failover"):
            api = stack.enter_context(HerokuApi({"DATABASE_URL": db.url}, token=TOKEN, app=APP))
            env |= {
                "HEROKU_API_KEY": TOKEN,
                "HEROKU_APP_NAME": APP,
                "HEROKU_API_URL": api.url,
                "DATABASE_URL": "",
            }
        tunables = sorted(k for k in {**cli.env, **env} if k.startswith(("DB_", "RESOLVER_")))
        if tunables:
            fail(f"the worker would not run with default settings: {', '.join(tunables)}")
        gate = Gate(db)
        stack.callback(gate.close)
        gate.install(after=GATE_AT)
        if fault == "none":
            gate.open()  # same trigger on every batch as the faulted runs, never closed

        process = cli.spawn("run", "earthquakes", **env)
        stack.callback(stop, process)
        tail = LogTail(process.stdout)
        scene = Scene(db, gate, tail, process, api, replica, new_primary)
        available = injected = None
        if fault != "none":
            pid = wait_at_gate(scene)
            injected = time.time()  # batches 1 and 2 committed before this, none after
            available = INJECT[fault](scene, pid)
        try:
            code = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            fail(f"{fault}: the worker did not finish within {RUN_TIMEOUT:g} s")
        stderr = process.stderr.read() if process.stderr else ""
        tail.text()
        final = new_primary or db
        sample = measure(fault, round_, code, stderr, tail, final, ids)
        if available is not None and injected is not None:
            account(sample, tail, available, injected)
            sample.late_by = scene.late_by
        return sample


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()


def measure(
    fault: str, round_: int, code: int, stderr: str, tail: LogTail, db: Database, ids: list[str]
) -> Sample:
    """Check the run (exit 0, every event exactly once, one finished line); its commits."""
    last_lines = "".join(tail.raw[-5:])
    if code != 0:
        fail(f"{fault} round {round_}: exit {code}\n{stderr.strip()}\n{last_lines}")
    stored = [row[0] for row in db.query("SELECT id FROM earthquakes ORDER BY id")]
    if stored != ids:
        fail(
            f"{fault} round {round_}: {len(stored)} rows ({len(set(stored))} distinct) in"
            f" earthquakes, expected exactly the {len(ids)} events of the feed"
        )
    finished = tail.events("job_finished")
    if len(finished) != 1 or finished[0]["status"] != "succeeded":
        fail(f"{fault} round {round_}: job_finished lines {finished}")
    if finished[0]["batches"] != ROWS // BATCH:
        fail(f"{fault} round {round_}: {finished[0]['batches']} batches, not {ROWS // BATCH}")
    commits = db.query(COMMITS)
    if [n for _, n in commits] != [BATCH] * (ROWS // BATCH):
        fail(f"{fault} round {round_}: batch transactions wrote {[n for _, n in commits]} rows")
    retries = tail.events("db_retry")
    return Sample(
        fault=fault,
        round=round_,
        exit_code=code,
        reconnects=finished[0]["reconnects"],
        rows=len(stored),
        commits=[c for c, _ in commits],
        retries=len(retries),
        causes=sorted({r["cause"] for r in retries}),
    )


def account(sample: Sample, tail: LogTail, available: float, injected: float) -> None:
    """Recovery time, and where it went, from the commits and the worker's own log lines."""
    after = [c for c in sample.commits if c is not None and c > injected]
    if not after:
        fail(f"{sample.fault} round {sample.round}: no batch committed after the fault")
    replayed = min(after)  # nothing commits while the batch waits at the gate
    sample.available, sample.recovery = available, replayed - available
    back = [at(line) for line in tail.events("db_reconnected") if at(line) >= available]
    if not back:
        return  # no reconnect after the URL became available: nothing to split
    reconnected = back[0]
    # Each db_retry line is logged just before its backoff sleep of wait_s (rounded to 10 ms).
    asleep = sum(
        overlap(at(line), at(line) + line["wait_s"], available, reconnected)
        for line in tail.events("db_retry")
    )
    sample.asleep = asleep
    sample.reconnecting = reconnected - available - asleep
    sample.replay = replayed - reconnected


def at(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(line["timestamp"]).timestamp()


def overlap(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


# -- summary and report ----------------------------------------------------------------------
def intervals(sample: Sample) -> list[float]:
    commits = [c for c in sample.commits if c is not None]
    return [b - a for a, b in itertools.pairwise(commits)]


def summarize(samples: list[Sample], args: argparse.Namespace, server: str) -> dict[str, Any]:
    defaults = Settings()
    gaps = [gap for s in samples if s.fault == "none" for gap in intervals(s)]
    baseline = statistics.median(gaps)
    faults = {}
    for fault in args.fault:
        runs = [s for s in samples if s.fault == fault]
        recoveries = [s.recovery for s in runs if s.recovery is not None]

        def median_of(name: str, runs: list[Sample] = runs) -> float | None:
            values = [getattr(s, name) for s in runs if getattr(s, name) is not None]
            return statistics.median(values) if values else None

        faults[fault] = {
            "runs": len(runs),
            "median_s": statistics.median(recoveries),
            "max_s": max(recoveries),
            "median_vs_baseline": statistics.median(recoveries) / baseline,
            "target_met": max(recoveries) <= TARGET_SECONDS,
            "reconnects": [s.reconnects for s in runs],
            "causes": sorted({c for s in runs for c in s.causes}),
            "median_asleep_s": median_of("asleep"),
            "median_reconnecting_s": median_of("reconnecting"),
            "median_replay_s": median_of("replay"),
            "median_retries": median_of("retries"),
            "median_late_by_s": median_of("late_by"),
        }
    return {
        "rows": ROWS,
        "batch_size": BATCH,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "server_version": server,
        "settings": {
            "DB_RETRY_INITIAL_DELAY": defaults.db_retry_initial_delay,
            "DB_RETRY_MAX_DELAY": defaults.db_retry_max_delay,
            "DB_CONNECT_TIMEOUT": defaults.db_connect_timeout,
        },
        "target_s": TARGET_SECONDS,
        "baseline": {"median_interval_s": baseline, "intervals": len(gaps)},
        "faults": faults,
        "samples": [asdict(s) for s in samples],
    }


def seconds(value: float | None, width: int = 8) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:>{width}.3f}"


def report(out: dict[str, Any]) -> str:
    settings = out["settings"]
    baseline = out["baseline"]
    lines = [
        f"Nightshift recovery benchmark: `run earthquakes`, {out['rows']:,} synthetic events in"
        f" batches of {out['batch_size']}, {out['repeat']} round(s), {out['cpus']} CPUs,"
        f" PostgreSQL {out['server_version']}",
        "Worker with default settings:"
        f" DB_RETRY_INITIAL_DELAY={settings['DB_RETRY_INITIAL_DELAY']:g} s,"
        f" DB_RETRY_MAX_DELAY={settings['DB_RETRY_MAX_DELAY']:g} s,"
        f" DB_CONNECT_TIMEOUT={settings['DB_CONNECT_TIMEOUT']:g} s (none set).",
        "Recovery: new URL available (time.time(); restart: the server's ready line) to the"
        " replayed batch's COMMIT (pg_xact_commit_timestamp); one machine, one clock.",
        "",
        f"baseline, no fault: median interval between consecutive batch commits"
        f" {baseline['median_interval_s']:.3f} s ({baseline['intervals']} intervals)",
        "",
        f"{'fault':<13}{'runs':>5}{'median s':>10}{'max s':>8}{'median/base':>13}"
        f"  {'target':<16}{'reconnects':<12}causes",
    ]
    for fault, f in out["faults"].items():
        verdict = f"<= {out['target_s']:g} s {'met' if f['target_met'] else 'NOT met'}"
        lines.append(
            f"{fault:<13}{f['runs']:>5}{f['median_s']:>10.3f}{f['max_s']:>8.3f}"
            f"{f['median_vs_baseline']:>12.1f}x  {verdict:<16}"
            f"{','.join(map(str, f['reconnects'])):<12}{', '.join(f['causes'])}"
        )
    lines += [
        "",
        "where the recovery went (medians, s; split by the worker's db_retry/db_reconnected lines)",
        "  asleep: in backoff sleeps after the URL was available",
        "  reconnect: the rest until db_reconnected (notice, resolve, connect, TLS, auth, setup)",
        "  replay: from db_reconnected to the replayed batch's COMMIT",
        f"{'fault':<13}{'asleep':>8}{'reconnect':>11}{'replay':>8}{'retries':>9}",
    ]
    for fault, f in out["faults"].items():
        lines.append(
            f"{fault:<13}{seconds(f['median_asleep_s'])}{seconds(f['median_reconnecting_s'], 11)}"
            f"{seconds(f['median_replay_s'])}{f['median_retries']:>9g}"
        )
    late = out["faults"].get("restart", {}).get("median_late_by_s")
    if late is not None:
        lines.append(
            f"restart: `pg_ctl start -w` returned a median {late:.3f} s after the server was ready"
        )
    lines += [
        "",
        "every run:",
        f"{'fault':<13}{'round':>6}{'recovery':>10}{'asleep':>8}{'reconnect':>11}{'replay':>8}"
        f"{'retries':>9}{'reconnects':>12}{'rows':>7}{'exit':>6}",
    ]
    for s in out["samples"]:
        lines.append(
            f"{s['fault']:<13}{s['round']:>6}{seconds(s['recovery'], 10)}{seconds(s['asleep'])}"
            f"{seconds(s['reconnecting'], 11)}{seconds(s['replay'])}{s['retries']:>9}"
            f"{s['reconnects']:>12}{s['rows']:>7}{s['exit_code']:>6}"
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each fault and of the baseline (default 3)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        choices=FAULTS,
        help="only this fault (repeatable; default all four)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.fault = args.fault or list(FAULTS)
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    document = synthetic_feed(ROWS)
    ids = sorted(feature["id"] for feature in document["features"])
    feed = FeedServer(document)
    samples: list[Sample] = []
    started = time.monotonic()
    try:
        # Interleaved rounds, as in bench/load.py: the machine's noise spreads over all faults.
        for round_ in range(1, args.repeat + 1):
            for fault in ("none", *args.fault):
                progress(f"round {round_}/{args.repeat}: {fault}")
                samples.append(run_once(fault, round_, feed, ids))
    finally:
        feed.close()
    progress(f"done in {time.monotonic() - started:.0f} s")
    out = summarize(samples, args, server_version())
    print(json.dumps(out, indent=2) if args.json else report(out))
    return 0


def server_version() -> str:
    result = subprocess.run(
        [str(find_bindir() / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    words = result.stdout.split()  # postgres (PostgreSQL) 15.18 (Debian …)
    return words[2] if len(words) > 2 else "?"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
