"""Throughput benchmark: the worker's `run` against COPY, an execute_values loop and dlt.

`make bench`, or `.venv/bin/python bench/throughput.py [--rows N] [--repeat N] [--rtt-ms MS]
[--big-rows N] [--skip-dlt] [--json]` from the project root (dlt: `bench/requirements.txt`).

One throwaway cluster (server defaults: fsync and synchronous_commit on) serves every method,
directly (RTT 0 ms) and through bench/delay_proxy.py (a userspace delay: +RTT, no bandwidth
limit). Each measurement is a fresh subprocess (`--method NAME`, internal) that loads the same
seeded 8-column rows (bench/bench_jobs/_data.py) into a fresh table, timed from the first
generated dict to the last committed row, and prints rows/s and its own peak RSS
(getrusage ru_maxrss) as JSON:

- worker: `python -m worker run bench_rows` in-process (worker.cli.main, the CLI's own path:
  discovery, settings, Run, BatchWriter, Loader, Database) with DATABASE_URL at the cluster or
  the proxy, JOBS_PACKAGE=bench.bench_jobs and default batch settings; its time is the
  `duration_s` of its `job_finished` line (Run created → run recorded, connect included);
- copy: one `COPY … FROM STDIN (FORMAT csv)` fed by `copy_expert` from a file object that
  writes the CSV from the dicts as COPY reads it (streamed), one COMMIT;
- values: `execute_values` of `INSERT … ON CONFLICT (id) DO UPDATE`, 1,000 rows and a COMMIT
  per batch;
- dlt: a dlt resource (write_disposition="merge", primary_key="id") run into the postgres
  destination; configured only through the subprocess's environment, pipelines in a temp dir;
- generate: the generator alone, no database (what making the dicts costs every method).

The 100k rounds are interleaved (the method order rotates each round) and the medians count;
the big run (1M rows, RTT 0) is one round, for peak RSS at scale. Every table is checked after
its load: row count and an md5 over its rows, equal across methods. Absolute rows/s follow
this noisy 2-core machine; read the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402
from psycopg2.extras import Json, execute_values  # noqa: E402

from bench.bench_jobs._data import COLUMNS, KEY, generate, pages, pages_of  # noqa: E402

DATABASE = "bench"
JOBS_PACKAGE = "bench.bench_jobs"
JOB = "bench_rows"  # bench/bench_jobs/rows.py: its table is bench_rows too
TABLES = {"worker": "bench_rows", "copy": "bench_copy", "values": "bench_values"}
DLT_DATASET = "bench_dlt"  # dlt's dataset is a schema; its table is "rows"
METHODS = ("worker", "copy", "values", "dlt")
LABELS = {
    "worker": "worker (python -m worker run)",
    "copy": "COPY (CSV, streamed)",
    "values": "execute_values upsert, 1000/commit",
    "dlt": "dlt merge",
    "generate": "generator only (no database)",
}
VALUES_BATCH = 1000
METHOD_TIMEOUT = 1800.0
# The targets, as ratios of rows/s in the same run, and the peak RSS at the big run.
TARGET_COPY_LOCAL = 0.5
TARGET_DLT_LOCAL = 4.0
TARGET_COPY_RTT = 0.4
TARGET_RSS_MB = 100.0
# Settings a developer's shell may hold that would make the worker's run not the default one.
_NOT_INHERITED = ("DB_", "BATCH_", "HTTP_", "HEROKU_", "DATABASE_", "DESTINATION__", "DLT_")


# == the measured side: `throughput.py --method NAME --url URL --rows N --seed S` ===============
def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, the high-water mark of its own memory since exec.

    Not getrusage's ru_maxrss alone: Linux carries the parent's peak across fork/vfork and exec
    into the child's ru_maxrss (a child of a 200 MB process reports 200 MB), so every method
    would show at least the orchestrator's peak. Where /proc is missing, ru_maxrss it is."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load_worker(url: str, rows: int, seed: int) -> dict[str, Any]:
    """The CLI in this process, its log lines to a file; time: job_finished's duration_s."""
    from worker import cli

    argv = ["run", JOB, "--param", f"rows={rows}", "--param", f"seed={seed}"]
    logs = Path(tempfile.mkdtemp(prefix="nightshift-bench-log-"))
    stdout = sys.stdout
    try:
        with open(logs / "run.log", "w") as log:
            sys.stdout = log  # cli.main logs a run to stdout; ours carries the result
            started = time.perf_counter()
            code = cli.main(argv)
            wall = time.perf_counter() - started
        lines = (logs / "run.log").read_text().splitlines()
    finally:
        sys.stdout = stdout
        shutil.rmtree(logs, ignore_errors=True)
    finished = [e for e in map(_json_or_none, lines) if e and e.get("event") == "job_finished"]
    if code != 0 or not finished or finished[-1].get("status") != "succeeded":
        detail = finished[-1].get("error") if finished else " | ".join(lines[-3:])
        raise RuntimeError(f"worker run exited {code}: {detail}")
    line = finished[-1]
    return {
        "seconds": line["duration_s"],
        "wall_s": round(wall, 3),
        "batches": line["batches"],
        "loaded": line["rows"],
    }


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class CsvStream(io.TextIOBase):
    """What copy_expert reads: the CSV of the rows, written a page at a time as it is read."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self.pages = pages_of(rows, 500)
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def read(self, size: int | None = -1) -> str:  # psycopg2 sends whatever it is given
        page = next(self.pages, None)
        if page is None:
            return ""
        dumps = json.dumps
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerows(
            (
                r["id"],
                r["observed_at"].isoformat(),
                r["name"],
                r["note"],  # None is an empty field: NULL in COPY's CSV (no text here is empty)
                r["amount"],
                r["quantity"],
                dumps(r["attributes"]),
                "t" if r["active"] else "f",
            )
            for r in page
        )
        return self.buffer.getvalue()


def load_copy(url: str, rows: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    conn = psycopg2.connect(url, application_name="bench-copy")
    try:
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            sql.Identifier(TABLES["copy"]), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        )
        with conn.cursor() as cur:
            cur.copy_expert(statement.as_string(conn), CsvStream(generate(rows, seed)), 65536)
        conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"seconds": seconds}


def load_values(url: str, rows: int, seed: int) -> dict[str, Any]:
    ident = sql.Identifier
    others = [c for c in COLUMNS if c != KEY]
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT ({key}) DO UPDATE SET {assign}"
    ).format(
        table=ident(TABLES["values"]),
        columns=sql.SQL(", ").join(map(ident, COLUMNS)),
        key=ident(KEY),
        assign=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in others),
    )
    started = time.perf_counter()
    conn = psycopg2.connect(url, application_name="bench-values")
    try:
        text = statement.as_string(conn)
        with conn.cursor() as cur:
            for page in pages_of(generate(rows, seed), VALUES_BATCH):
                execute_values(
                    cur,
                    text,
                    [
                        (
                            r["id"],
                            r["observed_at"],
                            r["name"],
                            r["note"],
                            r["amount"],
                            r["quantity"],
                            Json(r["attributes"]),
                            r["active"],
                        )
                        for r in page
                    ],
                    page_size=VALUES_BATCH,
                )
                conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"seconds": seconds}


# dlt infers types from values; these hints give it the columns the other methods declare, and
# keep `attributes` one jsonb column (unhinted, dlt would flatten it into columns and a child
# table of tags).
DLT_COLUMNS: dict[str, dict[str, Any]] = {
    "id": {"data_type": "bigint", "nullable": False},
    "observed_at": {"data_type": "timestamp"},
    "name": {"data_type": "text"},
    "note": {"data_type": "text"},
    "amount": {"data_type": "decimal", "precision": 12, "scale": 2},
    "quantity": {"data_type": "bigint", "precision": 32},
    "attributes": {"data_type": "json"},
    "active": {"data_type": "bool"},
}


def load_dlt(url: str, rows: int, seed: int) -> dict[str, Any]:
    """dlt merge. Credentials and telemetry come from the environment the orchestrator set."""
    import dlt

    @dlt.resource(name="rows", write_disposition="merge", primary_key=KEY, columns=DLT_COLUMNS)
    def resource_rows() -> Iterator[list[dict[str, Any]]]:
        yield from pages(rows, seed)  # pages, as dlt recommends and as the worker's job yields

    pipelines = tempfile.mkdtemp(prefix="nightshift-bench-dlt-")
    try:
        started = time.perf_counter()
        pipeline = dlt.pipeline(
            pipeline_name="nightshift_throughput",
            destination="postgres",
            dataset_name=DLT_DATASET,
            pipelines_dir=pipelines,
        )
        info = pipeline.run(resource_rows())
        info.raise_on_failed_jobs()
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(pipelines, ignore_errors=True)
    return {"seconds": seconds, "dlt": dlt.__version__}


def load_nothing(url: str, rows: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    for _ in pages(rows, seed):
        pass
    return {"seconds": time.perf_counter() - started}


LOADERS = {
    "worker": load_worker,
    "copy": load_copy,
    "values": load_values,
    "dlt": load_dlt,
    "generate": load_nothing,
}


def measure(args: argparse.Namespace) -> int:
    """One method, once, in this (fresh) process; one JSON line on stdout."""
    try:
        out = LOADERS[args.method](args.url, args.rows, args.seed)
    except Exception as exc:
        print(json.dumps({"method": args.method, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    out.update(
        method=args.method,
        rows=args.rows,
        rows_per_s=args.rows / out["seconds"],
        peak_rss_mb=round(peak_rss_mb(), 1),
        ru_maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    print(json.dumps(out))
    return 0


# == the orchestrating side ==================================================================
def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Admin:
    """An autocommit session on the bench database: tables, checkpoints, counts and digests."""

    def __init__(self, port: int) -> None:
        self.url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
        self.conn = psycopg2.connect(self.url, application_name="bench-admin")
        self.conn.autocommit = True
        self.query("SET TimeZone = 'UTC'")  # digests read timestamptz as text

    def query(self, statement: Any, args: Any = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []

    def prepare(self, method: str) -> None:
        """A fresh, empty target table (dlt: no dataset at all, as on its first run)."""
        if method == "dlt":
            for schema in (DLT_DATASET, f"{DLT_DATASET}_staging"):
                self.query(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
            return
        if method not in TABLES:
            return
        from bench.bench_jobs.rows import bench_rows  # the worker's own DDL for every table
        from worker.store.migrate import ensure_table

        job = replace(bench_rows.__nightshift_job__, table=TABLES[method])
        self.query(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(job.table)))
        with self.conn.cursor() as cur:
            ensure_table(cur, job)

    def check(self, method: str) -> tuple[int, str] | None:
        """The table's row count and an md5 over its rows in key order (None: no table)."""
        if method == "dlt":
            table = sql.Identifier(DLT_DATASET, "rows")
        elif method in TABLES:
            table = sql.Identifier(TABLES[method])
        else:
            return None
        # %L: NULL unquoted, values quoted, so no two different rows render alike.
        row = self.query(
            sql.SQL(
                "SELECT count(*), md5(string_agg(format('%L|%L|%L|%L|%L|%L|%L|%L', id,"
                " observed_at, name, note, amount::numeric(12,2), quantity::int,"
                " attributes::jsonb, active), E'\\n' ORDER BY id)) FROM {}"
            ).format(table)
        )[0]
        return int(row[0]), row[1]

    def server(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_wal_size")
        return {name: self.query(f"SHOW {name}")[0][0] for name in names}


def ping(url: str, count: int = 20) -> dict[str, float]:
    """`SELECT 1` round trips on one session: the RTT a statement sees (median, min, max ms)."""
    conn = psycopg2.connect(url, application_name="bench-ping")
    try:
        conn.autocommit = True
        times = []
        with conn.cursor() as cur:
            for _ in range(count + 2):
                started = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchall()
                times.append((time.perf_counter() - started) * 1000)
        times = times[2:]  # the first carry the session's warm-up
    finally:
        conn.close()
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def method_env(method: str, url: str, scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    env["PYTHONUNBUFFERED"] = "1"
    if method == "worker":
        env.update(DATABASE_URL=url, JOBS_PACKAGE=JOBS_PACKAGE, LOG_FORMAT="json", LOG_LEVEL="INFO")
    if method == "dlt":
        # Everything dlt reads or writes stays in the scratch dir: its data dir, its "home",
        # and no telemetry. libpq's trust login ignores the password dlt insists on.
        env.update(
            DESTINATION__POSTGRES__CREDENTIALS=url.replace("postgres@", "postgres:bench@", 1),
            RUNTIME__DLTHUB_TELEMETRY="false",
            DLT_DATA_DIR=str(scratch / "dlt-data"),
            HOME=str(scratch / "home"),
        )
    return env


def run_method(method: str, url: str, rows: int, seed: int, scratch: Path) -> dict[str, Any]:
    """One method in a fresh interpreter; its JSON line, or {"error": ...}."""
    command = [sys.executable, str(Path(__file__).resolve()), "--method", method, "--url", url]
    command += ["--rows", str(rows), "--seed", str(seed)]
    cwd = scratch if method == "dlt" else ROOT  # dlt looks for a .dlt/ in its working directory
    try:
        done = subprocess.run(
            command,
            env=method_env(method, url, scratch),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=METHOD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"no answer within {METHOD_TIMEOUT:.0f} s"}
    lines = done.stdout.strip().splitlines()
    result = _json_or_none(lines[-1]) if lines else None
    if result is None:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"method": method, "error": f"exit {done.returncode}: {tail}"}
    return result


def one(
    admin: Admin, method: str, url: str, rows: int, args: argparse.Namespace, scratch: Path
) -> dict[str, Any]:
    """Fresh table, CHECKPOINT (no checkpoint owed from the last load), load, verify."""
    admin.prepare(method)
    admin.query("CHECKPOINT")
    result = run_method(method, url, rows, args.seed, scratch)
    if "error" not in result:
        checked = admin.check(method)
        if checked is not None:
            result["count"], result["digest"] = checked
        admin.prepare(method)  # leave no 1M-row tables behind
    label = LABELS[method]
    if "error" in result:
        progress(f"    {label}: FAILED: {result['error']}")
    else:
        progress(
            f"    {label}: {result['rows_per_s']:,.0f} rows/s,"
            f" peak RSS {result['peak_rss_mb']:.0f} MB"
        )
    return result


def rounds(
    admin: Admin, url: str, methods: list[str], rows: int, repeat: int, args: argparse.Namespace,
    scratch: Path, title: str,
) -> dict[str, Any]:  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for round_ in range(repeat):
        progress(f"{title}: round {round_ + 1}/{repeat}, {rows:,} rows")
        order = methods[round_ % len(methods) :] + methods[: round_ % len(methods)]
        for method in order:
            runs[method].append(one(admin, method, url, rows, args, scratch))
    return {m: summarise(rs) for m, rs in runs.items()}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"runs": runs}
    if len(good) == len(runs):
        ordered = sorted(good, key=lambda r: r["rows_per_s"])
        median = ordered[(len(ordered) - 1) // 2]
        out.update(
            rows_per_s=median["rows_per_s"],
            peak_rss_mb=max(r["peak_rss_mb"] for r in good),
        )
    else:
        out["error"] = next(r["error"] for r in runs if "error" in r)
    return out


def ratios(table: dict[str, Any]) -> None:
    copy = table.get("copy", {}).get("rows_per_s")
    dlt = table.get("dlt", {}).get("rows_per_s")
    for entry in table.values():
        rate = entry.get("rows_per_s")
        entry["vs_copy"] = rate / copy if rate and copy else None
        entry["vs_dlt"] = rate / dlt if rate and dlt else None


def verify(out: dict[str, Any]) -> dict[str, Any]:
    """Every loaded table of one size: the expected count, and one digest across methods."""
    by_size: dict[int, dict[str, set[str]]] = {}
    problems = []
    for section in [*out["rtts"].values(), out.get("big") or {}]:
        for method, entry in section.items():
            for run in entry["runs"]:
                if "digest" not in run:
                    continue
                if run["count"] != run["rows"]:
                    problems.append(f"{method}: {run['count']:,} rows, expected {run['rows']:,}")
                by_size.setdefault(run["rows"], {}).setdefault(run["digest"], set()).add(method)
    for size, digests in by_size.items():
        if len(digests) > 1:
            groups = "; ".join(f"{', '.join(sorted(m))}: {d[:12]}" for d, m in digests.items())
            problems.append(f"{size:,} rows: digests differ ({groups})")
    return {
        "ok": not problems,
        "problems": problems,
        "digests": {size: sorted(d)[0] for size, d in by_size.items() if len(d) == 1},
    }


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    local = out["rtts"].get("0", {}).get("worker", {})
    rtt_key = next((k for k in out["rtts"] if k != "0"), None)
    delayed = out["rtts"][rtt_key].get("worker", {}) if rtt_key else {}
    big = (out.get("big") or {}).get("worker", {})
    rss = f"worker peak RSS <= {TARGET_RSS_MB:g} MB at {out['big_rows']:,} rows"
    checks = [
        (f"worker >= {TARGET_COPY_LOCAL:g}x COPY at RTT 0", local.get("vs_copy"),
         TARGET_COPY_LOCAL),
        (f"worker >= {TARGET_DLT_LOCAL:g}x dlt at RTT 0", local.get("vs_dlt"), TARGET_DLT_LOCAL),
        (f"worker >= {TARGET_COPY_RTT:g}x COPY at RTT +{rtt_key} ms", delayed.get("vs_copy"),
         TARGET_COPY_RTT),
        (rss, big.get("peak_rss_mb"), -TARGET_RSS_MB),  # negative: an upper bound
    ]  # fmt: skip
    result = []
    for name, value, bound in checks:
        met = None if value is None else (value >= bound if bound > 0 else value <= -bound)
        result.append({"target": name, "value": value, "bound": abs(bound), "met": met})
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.delay_proxy import DelayProxy
    from worker.database.embedded import Cluster

    methods = [m for m in METHODS if not (args.skip_dlt and m == "dlt")]
    home = Path(tempfile.mkdtemp(prefix="nightshift-bench-", dir="/tmp"))
    os.chmod(home, 0o755)  # as root, the postgres OS user runs the server in here
    scratch = Path(tempfile.mkdtemp(prefix="nightshift-bench-scratch-", dir="/tmp"))
    (scratch / "home").mkdir()
    cluster = Cluster(home)
    proxy: DelayProxy | None = None
    admin: Admin | None = None
    try:
        progress(f"starting a throwaway PostgreSQL cluster in {home}")
        cluster.init()
        cluster.start()  # server defaults: durable commits, as on a real database
        cluster.create_database(DATABASE)
        admin = Admin(cluster.port)
        direct = admin.url
        migrate = subprocess.run(
            [sys.executable, "-m", "worker", "migrate"],
            env=method_env("worker", direct, scratch),
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise SystemExit(f"python -m worker migrate failed: {migrate.stderr.strip()}")
        out: dict[str, Any] = {
            "rows": args.rows, "repeat": args.repeat, "seed": args.seed,
            "big_rows": args.big_rows, "cpus": os.cpu_count(), "server": admin.server(),
            "rtts": {}, "big": None, "ping": {"direct": ping(direct)},
        }  # fmt: skip
        urls = {"0": direct}  # by the RTT added, in ms
        if args.rtt_ms > 0:
            proxy = DelayProxy("127.0.0.1", cluster.port, args.rtt_ms / 2000)  # half each way
            delayed = f"postgresql://postgres@127.0.0.1:{proxy.port}/{DATABASE}"
            urls[f"{args.rtt_ms:g}"] = delayed
            out["ping"]["proxy"] = ping(delayed)
        for name, measured in out["ping"].items():
            progress(
                f"SELECT 1 round trip, {name}: median {measured['median_ms']:.2f} ms"
                f" (min {measured['min_ms']:.2f}, max {measured['max_ms']:.2f})"
            )

        # Warm up, untimed: the server's WAL segments and caches, the interpreters' imports.
        warm = min(args.rows, 20_000)
        progress(f"warming up: every method once, {warm:,} rows")
        for method in methods:
            one(admin, method, direct, warm, args, scratch)

        for rtt, url in urls.items():
            local = ["generate"] if rtt == "0" else []  # no database: once is enough
            table = rounds(
                admin, url, methods + local, args.rows, args.repeat, args, scratch,
                "RTT 0 ms (direct)" if rtt == "0" else f"RTT +{rtt} ms",
            )  # fmt: skip
            ratios(table)
            out["rtts"][rtt] = table
        if args.big_rows:
            big = rounds(
                admin, direct, [*methods, "generate"], args.big_rows, 1, args, scratch,
                "big run, RTT 0 ms",
            )  # fmt: skip
            ratios(big)
            out["big"] = big
        if proxy is not None:
            out["proxy_connections"] = proxy.connections
    finally:
        if proxy is not None:
            proxy.close()
        if admin is not None:
            admin.conn.close()
        cluster.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    out["same_data"] = verify(out)
    out["targets"] = targets(out)
    return out


# == report ==================================================================================
def report(out: dict[str, Any]) -> str:
    server = out["server"]
    dlt_version = next(
        (r.get("dlt") for s in out["rtts"].values() for r in s.get("dlt", {}).get("runs", [])
         if r.get("dlt")), None,
    )  # fmt: skip
    lines = [
        f"Nightshift throughput benchmark: {out['rows']:,} rows of 8 columns, seed {out['seed']},"
        f" median of {out['repeat']} interleaved rounds, {out['cpus']} CPUs",
        f"PostgreSQL {server['server_version']}, server defaults: fsync={server['fsync']},"
        f" synchronous_commit={server['synchronous_commit']},"
        f" shared_buffers={server['shared_buffers']}, max_wal_size={server['max_wal_size']}",
        "Each method: a fresh process, a fresh table, timed from the first generated dict to"
        " the last COMMIT; worker = job_finished's duration_s."
        + (f" dlt {dlt_version}." if dlt_version else ""),
    ]
    for name, measured in out["ping"].items():
        lines.append(
            f"SELECT 1 round trip, {name}: median {measured['median_ms']:.2f} ms"
            f" (min {measured['min_ms']:.2f}, max {measured['max_ms']:.2f}, 20 trips)"
        )
    for rtt, table in out["rtts"].items():
        title = "RTT 0 ms (direct)" if rtt == "0" else f"RTT +{rtt} ms (delay proxy)"
        lines += ["", f"{title}, {out['rows']:,} rows, median of {out['repeat']}"]
        lines += _table(table)
    if out.get("big"):
        lines += ["", f"{out['big_rows']:,} rows, RTT 0 ms (direct), one round"]
        lines += _table(out["big"])
    same = out["same_data"]
    lines.append("")
    if same["ok"]:
        digests = ", ".join(f"{int(n):,} rows {d[:12]}" for n, d in same["digests"].items())
        lines.append(f"same data in every table (count and md5 over rows): yes ({digests})")
    else:
        lines += ["same data in every table: NO", *(f"  {p}" for p in same["problems"])]
    lines += ["", "targets (the issue's)"]
    for target in out["targets"]:
        value = target["value"]
        shown = (
            "n/a"
            if value is None
            else f"{value:.2f}" + ("x" if "RSS" not in target["target"] else " MB")
        )
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"  {target['target']:<44}{shown:>10}  {verdict}")
    return "\n".join(lines)


def _table(table: dict[str, Any]) -> list[str]:
    lines = [f"  {'method':<38}{'rows/s':>10}{'x COPY':>9}{'x dlt':>8}{'peak RSS MB':>13}  rounds"]
    for method, entry in table.items():
        label = LABELS[method]
        if "error" in entry:
            lines.append(f"  {label:<38}  FAILED: {entry['error']}")
            continue
        each = ", ".join(f"{r['rows_per_s']:,.0f}" for r in entry["runs"])
        lines.append(
            f"  {label:<38}{entry['rows_per_s']:>10,.0f}{_ratio(entry['vs_copy']):>9}"
            f"{_ratio(entry['vs_dlt']):>8}{entry['peak_rss_mb']:>13.0f}  {each}"
        )
    return lines


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per load (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians count (default 3)")
    parser.add_argument(
        "--rtt-ms", type=float, default=20.0, help="RTT added by the proxy (default 20; 0: none)"
    )
    parser.add_argument(
        "--big-rows",
        type=int,
        default=1_000_000,
        help="the one-round big run (default 1000000; 0: none)",
    )
    parser.add_argument("--skip-dlt", action="store_true", help="leave dlt out")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--method", choices=sorted(LOADERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1 or args.big_rows < 0 or args.rtt_ms < 0:
        parser.error("--rows and --repeat must be at least 1, --big-rows and --rtt-ms at least 0")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.method:
        return measure(args)
    started = time.monotonic()
    out = run(args)
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, indent=2) if args.json else report(out))
    progress(f"done in {out['elapsed_s'] / 60:.1f} min")
    failed = any(
        "error" in e for s in [*out["rtts"].values(), out["big"] or {}] for e in s.values()
    )
    return 0 if out["same_data"]["ok"] and not failed else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main(sys.argv[1:]))
