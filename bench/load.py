"""Load benchmark: the loader's upsert against executemany and COPY, on a throwaway cluster.

`make bench`, or `.venv/bin/python bench/load.py [--rows N] [--json]` from the project root.

Every method starts from the same deterministic rows (dicts, as a job yields them) and ends
with them committed in the table, so the work from dict to durable row is timed alike: the
loader's checks + `execute_values`, executemany's tuples, COPY's CSV text. The server runs
with its defaults (fsync, synchronous_commit on): a commit per batch costs what it costs on a
real database. Absolute rows/s follow the machine; the ratios are what the targets are about.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
from psycopg2 import extensions, sql  # noqa: E402
from psycopg2.extensions import connection as Connection  # noqa: E402
from psycopg2.extras import Json  # noqa: E402

from config import Settings  # noqa: E402
from worker.database.connection import Database  # noqa: E402
from worker.database.embedded import Cluster  # noqa: E402
from worker.database.resolver import parse as parse_url  # noqa: E402
from worker.registry import Job  # noqa: E402
from worker.run.loader import Loader  # noqa: E402
from worker.store.migrate import ensure_table  # noqa: E402

Row = Mapping[str, Any]

COLUMNS = {
    "id": "bigint",
    "observed_at": "timestamptz",
    "name": "text",
    "amount": "numeric(12,2)",
    "quantity": "integer",
    "attributes": "jsonb",
    "active": "boolean",
}
DATABASE = "bench"
SWEEP_SIZES = (100, 500, 1000, 2000, 5000)
# The issue's targets for the loader's upsert, as multiples of the other methods' rows/s.
TARGET_VS_EXECUTEMANY = 5.0
TARGET_VS_COPY = 0.35

_PLACES = ("Reno", "Anchorage", "Hilo", "Ridgecrest", "Petrolia", "San Simeón", "Coso", "Aguanga")
_WORDS = ("north", "ridge", "bay", "valley", "station", "pier", "creek", "summit", "dock", "yard")
_SOURCES = ("api", "feed", "manual", "backfill")
_TAGS = ("reviewed", "automatic", "late", "revised", "estimated", "flagged")


# -- data ------------------------------------------------------------------------------------
def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` rows in arrival order: ascending ids with gaps, some nulls, text that CSV must quote."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = []
    ident = 10_000_000_000  # past int4, as a real bigint key would be
    for i in range(n):
        ident += rng.randint(1, 5)
        name = f"{rng.choice(_PLACES)} {rng.choice(_WORDS)} {rng.randint(1, 999)}"
        if rng.random() < 0.1:
            name += f', "{rng.choice(_WORDS)}" wing'
        rows.append(
            {
                "id": ident,
                "observed_at": start
                + dt.timedelta(seconds=i * 13, microseconds=rng.randint(0, 999_999)),
                "name": name,
                "amount": None
                if rng.random() < 0.03
                else Decimal(rng.randint(-100_000, 10_000_000)).scaleb(-2),
                "quantity": None if rng.random() < 0.05 else rng.randint(0, 50_000),
                "attributes": {
                    "source": rng.choice(_SOURCES),
                    "tags": rng.sample(_TAGS, rng.randint(0, 3)),
                    "score": round(rng.random() * 100, 3),
                    "rev": rng.randint(1, 9),
                },
                "active": rng.random() < 0.8,
            }
        )
    return rows


def batches(rows: Sequence[Row], size: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def bench_job(table: str) -> Job:
    job = Job(
        name=table,
        function=lambda ctx: iter(()),
        table=table,
        columns=COLUMNS,
        key=("id",),
        mode="upsert",
    )
    job.validate()
    return job


# -- the methods -----------------------------------------------------------------------------
# Each writes `rows` in batches of `size`, one commit per batch, and returns rows changed.
def load_with_loader(conn: Connection, job: Job, rows: Sequence[Row], size: int) -> int:
    """The worker's own path: `Database.run` (replay, client-side deadline) around the loader."""
    loader = Loader(job)
    changed = 0
    resolved = parse_url(conn.dsn, "bench")
    try:
        with Database(Settings(), "bench-loader", resolver=lambda _settings: resolved) as db:
            for batch in batches(rows, size):
                changed += db.run(lambda cur, batch=batch: loader.write_rows(cur, batch).changed)
    finally:
        # The worker's wait callback is process-wide; COPY (a baseline) refuses to run under it.
        extensions.set_wait_callback(None)
    return changed


def upsert_statement(job: Job) -> sql.Composed:
    """One row's INSERT … ON CONFLICT DO UPDATE, the same clause the loader sends per batch."""
    columns = list(job.columns)
    others = [c for c in columns if c not in job.key]
    ident = sql.Identifier
    return sql.SQL(
        "INSERT INTO {table} AS t ({columns}) VALUES ({values}) ON CONFLICT ({key})"
        " DO UPDATE SET {assign} WHERE ROW({current}) IS DISTINCT FROM ROW({incoming})"
    ).format(
        table=ident(job.schema, job.table),
        columns=sql.SQL(", ").join(map(ident, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        key=sql.SQL(", ").join(map(ident, job.key)),
        assign=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in others),
        current=sql.SQL(", ").join(sql.SQL("t.{}").format(ident(c)) for c in others),
        incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(ident(c)) for c in others),
    )


def load_with_executemany(conn: Connection, job: Job, rows: Sequence[Row], size: int) -> int:
    statement = upsert_statement(job).as_string(conn)
    changed = 0
    with conn.cursor() as cur:
        for batch in batches(rows, size):
            cur.executemany(
                statement,
                [
                    (
                        r["id"],
                        r["observed_at"],
                        r["name"],
                        r["amount"],
                        r["quantity"],
                        Json(r["attributes"]),
                        r["active"],
                    )
                    for r in batch
                ],
            )
            changed += max(cur.rowcount, 0)
            conn.commit()
    return changed


def csv_text(rows: Sequence[Row]) -> io.StringIO:
    """The rows as COPY's CSV: NULL is an empty field (no text here is empty), jsonb its text."""
    buffer = io.StringIO()
    dumps = json.dumps
    csv.writer(buffer, lineterminator="\n").writerows(
        (
            r["id"],
            r["observed_at"].isoformat(),
            r["name"],
            r["amount"],
            r["quantity"],
            dumps(r["attributes"]),
            "t" if r["active"] else "f",
        )
        for r in rows
    )
    buffer.seek(0)
    return buffer


def copy_statement(conn: Connection, job: Job) -> str:
    return (
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)")
        .format(
            sql.Identifier(job.schema, job.table),
            sql.SQL(", ").join(map(sql.Identifier, job.columns)),
        )
        .as_string(conn)
    )


def load_with_copy(conn: Connection, job: Job, rows: Sequence[Row], size: int) -> int:
    statement = copy_statement(conn, job)
    with conn.cursor() as cur:
        for batch in batches(rows, size):
            cur.copy_expert(statement, csv_text(batch))
            conn.commit()
    return len(rows)


# -- measuring -------------------------------------------------------------------------------
@dataclass
class Result:
    method: str
    rows: int
    seconds: float
    changed: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


class Bench:
    """A load connection plus an autocommit one for DDL, checkpoints and checks."""

    def __init__(self, cluster: Cluster) -> None:
        params = {"host": "127.0.0.1", "port": cluster.port, "user": "postgres"}
        self.conn = psycopg2.connect(**params, dbname=DATABASE, application_name="bench-load")
        self.admin = psycopg2.connect(**params, dbname=DATABASE, application_name="bench-admin")
        self.admin.autocommit = True

    def close(self) -> None:
        self.conn.close()
        self.admin.close()

    def query(self, statement: sql.Composable | str, args: Any = None) -> list[tuple]:
        with self.admin.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []

    def fresh_table(self, table: str) -> Job:
        job = bench_job(table)
        self.query(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(job.schema, table)))
        with self.admin.cursor() as cur:
            ensure_table(cur, job)
        return job

    def drop(self, job: Job) -> None:
        self.query(sql.SQL("DROP TABLE {}").format(sql.Identifier(job.schema, job.table)))

    def measure(
        self,
        method: str,
        write: Callable[[Connection, Job, Sequence[Row], int], int],
        job: Job,
        rows: Sequence[Row],
        size: int,
    ) -> Result:
        # Start every measurement from a clean slate: no checkpoint owed from the last one.
        self.query("CHECKPOINT")
        started = time.perf_counter()
        changed = write(self.conn, job, rows, size)
        seconds = time.perf_counter() - started
        count = self.count(job)
        if count != len(rows):
            raise SystemExit(f"{method}: {count} rows in {job.table}, expected {len(rows)}")
        return Result(method, len(rows), seconds, changed)

    def count(self, job: Job) -> int:
        table = sql.Identifier(job.schema, job.table)
        return self.query(sql.SQL("SELECT count(*) FROM {}").format(table))[0][0]

    def digest(self, job: Job, up_to_id: int | None = None) -> str:
        """One md5 over the table's rows as text, in key order: equal digests, equal data."""
        return self.query(
            sql.SQL(
                "SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) FROM {} AS t"
                " WHERE %s IS NULL OR id <= %s"
            ).format(sql.Identifier(job.schema, job.table)),
            (up_to_id, up_to_id),
        )[0][0]

    def server(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_wal_size")
        return {name: self.query(f"SHOW {name}")[0][0] for name in names}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(rows: list[dict[str, Any]], args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    size = args.batch_size
    n = len(rows)
    few = rows[: min(args.executemany_rows, n)]
    sweep_rows = rows[: min(args.sweep_rows, n)]

    # Warm up (untimed): import and adaptation paths, the server's caches, WAL segments.
    progress("warming up")
    scratch = bench.fresh_table("bench_warmup")
    load_with_copy(bench.conn, scratch, rows, n)
    bench.drop(scratch)
    scratch = bench.fresh_table("bench_warmup")
    load_with_loader(bench.conn, scratch, rows[: min(10_000, n)], size)
    load_with_executemany(bench.conn, scratch, rows[: min(1_000, n)], size)
    bench.drop(scratch)

    # Each method runs `repeat` times, interleaved, and its median counts: the machine is noisy.
    runs: dict[str, list[Result]] = {}
    for round_ in range(1, args.repeat + 1):
        progress(f"round {round_}/{args.repeat}: loader upsert, {n:,} rows into an empty table")
        loaded = bench.fresh_table("bench_loader")
        runs.setdefault("loader", []).append(
            bench.measure("loader upsert, empty table", load_with_loader, loaded, rows, size)
        )
        progress(f"round {round_}: loader upsert again over the same rows (a rerun)")
        runs.setdefault("rerun", []).append(
            bench.measure("loader upsert, rerun (unchanged)", load_with_loader, loaded, rows, size)
        )
        progress(f"round {round_}: executemany upsert, {len(few):,} rows")
        many = bench.fresh_table("bench_executemany")
        runs.setdefault("executemany", []).append(
            bench.measure("executemany upsert, empty table", load_with_executemany, many, few, size)
        )
        progress(f"round {round_}: COPY, one per batch, {n:,} rows")
        copied = bench.fresh_table("bench_copy_batched")
        runs.setdefault("copy_batched", []).append(
            bench.measure("COPY, one per batch", load_with_copy, copied, rows, size)
        )
        progress(f"round {round_}: COPY, one for all {n:,} rows")
        single = bench.fresh_table("bench_copy_single")
        runs.setdefault("copy_single", []).append(
            bench.measure("COPY, one for all rows", load_with_copy, single, rows, n)
        )
    results = {
        key: sorted(rs, key=lambda r: r.rate)[(len(rs) - 1) // 2] for key, rs in runs.items()
    }

    # Every method must have loaded the same data, or its speed means nothing.
    reference = bench.digest(loaded)
    same = {
        "copy_batched": bench.digest(copied) == reference,
        "copy_single": bench.digest(single) == reference,
        "executemany": bench.digest(many) == bench.digest(loaded, few[-1]["id"]),
    }
    for job in (loaded, many, copied, single):
        bench.drop(job)

    sweep = []
    pages = sorted({*SWEEP_SIZES, size})
    for page in pages:
        progress(f"sweep: loader upsert, {len(sweep_rows):,} rows in batches of {page}")
        job = bench.fresh_table("bench_sweep")
        sweep.append(
            bench.measure(f"loader, batch {page}", load_with_loader, job, sweep_rows, page)
        )
        bench.drop(job)

    loader = results["loader"].rate
    ratios = {
        "loader/executemany": loader / results["executemany"].rate,
        "loader/copy_batched": loader / results["copy_batched"].rate,
        "loader/copy_single": loader / results["copy_single"].rate,
    }
    targets = {
        "loader/executemany": TARGET_VS_EXECUTEMANY,
        "loader/copy_batched": TARGET_VS_COPY,
        "loader/copy_single": TARGET_VS_COPY,
    }
    return {
        "rows": n,
        "batch_size": size,
        "seed": args.seed,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "server": bench.server(),
        "results": {key: {**asdict(r), "rows_per_s": r.rate} for key, r in results.items()},
        "same_data": same,
        "sweep": [
            {"batch_size": p, **asdict(r), "rows_per_s": r.rate}
            for p, r in zip(pages, sweep, strict=True)
        ],
        "ratios": ratios,
        "targets": {k: {"at_least": t, "met": ratios[k] >= t} for k, t in targets.items()},
    }


# -- report ----------------------------------------------------------------------------------
def report(out: dict[str, Any]) -> str:
    server = out["server"]
    lines = [
        f"Nightshift load benchmark: {out['rows']:,} rows, batch size {out['batch_size']}"
        f" (one commit per batch), seed {out['seed']}, {out['cpus']} CPUs",
        f"PostgreSQL {server['server_version']} with server defaults: fsync={server['fsync']},"
        f" synchronous_commit={server['synchronous_commit']},"
        f" shared_buffers={server['shared_buffers']}, max_wal_size={server['max_wal_size']}",
        "Absolute numbers depend on this machine and its noise; the ratios are what matter.",
        f"Each row below is the median of {out['repeat']} interleaved rounds.",
        "",
        f"{'method':<36}{'rows':>10}{'seconds':>10}{'rows/s':>10}{'changed':>10}",
    ]
    for result in out["results"].values():
        lines.append(
            f"{result['method']:<36}{result['rows']:>10,}{result['seconds']:>10.2f}"
            f"{result['rows_per_s']:>10,.0f}{result['changed']:>10,}"
        )
    same = out["same_data"]
    lines.append(
        "same data as the loader's table: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items())
    )
    lines += ["", f"{'ratio of rows/s (loader upsert, empty table)':<48}{'':>8}  target"]
    for key, ratio in out["ratios"].items():
        target = out["targets"][key]
        verdict = "met" if target["met"] else "NOT met"
        lines.append(f"{key:<48}{ratio:>7.3f}x  >= {target['at_least']:g}x  {verdict}")
    rates = {entry["batch_size"]: entry["rows_per_s"] for entry in out["sweep"]}
    base = rates[out["batch_size"]]
    lines += [
        "",
        f"batch size sweep, loader upsert of {out['sweep'][0]['rows']:,} rows into an empty table",
        f"{'batch size':<12}{'seconds':>10}{'rows/s':>10}{'vs ' + str(out['batch_size']):>12}",
    ]
    for entry in out["sweep"]:
        lines.append(
            f"{entry['batch_size']:<12}{entry['seconds']:>10.2f}{entry['rows_per_s']:>10,.0f}"
            f"{entry['rows_per_s'] / base:>11.2f}x"
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows to load (default 200000)")
    parser.add_argument(
        "--executemany-rows",
        type=int,
        default=20_000,
        help="executemany is slow: time it on the first N rows (default 20000)",
    )
    parser.add_argument(
        "--sweep-rows", type=int, default=50_000, help="rows per batch-size sweep point"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=Settings().batch_size,
        help="rows per batch and commit (default: the worker's BATCH_SIZE default)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of the comparison; medians count (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if min(args.rows, args.executemany_rows, args.sweep_rows, args.batch_size) < 1:
        parser.error("row counts and the batch size must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    progress(f"generating {args.rows:,} rows")
    rows = make_rows(args.rows, args.seed)
    home = Path(tempfile.mkdtemp(prefix="nightshift-bench-", dir="/tmp"))
    os.chmod(home, 0o755)  # as root, the postgres OS user runs the server in here
    cluster = Cluster(home)
    bench = None
    try:
        progress(f"starting a throwaway PostgreSQL cluster in {home}")
        cluster.init()
        cluster.start()  # server defaults: durable commits, as on a real database
        cluster.create_database(DATABASE)
        bench = Bench(cluster)
        out = run(rows, args, bench)
    finally:
        if bench is not None:
            bench.close()
        cluster.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=2) if args.json else report(out))
    return 0 if all(out["same_data"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
