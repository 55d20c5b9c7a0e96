"""Streaming benchmark: peak RSS and items/s of the streaming readers against get_json.

`.venv/bin/python bench/stream.py [--items N] [--baseline-items N] [--json]` from the project root.

A local HTTP server (a child process, so that its work neither shares this process's GIL nor
counts in its memory) generates GeoJSON features shaped like USGS's on the fly — 64 KiB at a
time, never a whole body — as a GeoJSON document, as NDJSON and as CSV, plain or gzipped.
This process reads them through the job's own session (`worker.source.http.Session`, default
settings but for HTTP_MAX_BUFFERED_BYTES, raised so that get_json may hold its baseline) and
measures each reader in turn: its peak RSS (`getrusage`'s ru_maxrss, the high-water mark reset
before each case through /proc/self/clear_refs) and its items/s, counting every item.

The baseline is get_json at --baseline-items (100,000 by default: the body it must hold is
~80 MB); the streaming readers read --items (1,000,000: ~800 MB) and should stay flat: their
peak is the interpreter's, whatever the size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from config import Settings  # noqa: E402
from jobs.earthquakes import to_row  # noqa: E402
from worker.source.http import Session  # noqa: E402
from worker.source.readers import IJSON  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "usgs_all_day_2016-11-03.geojson"
CHUNK = 64 * 1024
MB = 1024 * 1024


# -- the server (a child process) ----------------------------------------------------------------
def feature_template() -> str:
    """One real USGS feature as JSON, with %-slots for what differs from event to event."""
    feature = json.loads(FIXTURE.read_text())["features"][0]
    feature["id"] = "@ID@"
    feature["properties"].update(time="@TIME@", updated="@UPDATED@", code="@ID@")
    text = json.dumps(feature, separators=(",", ":")).replace("%", "%%")
    for slot, fmt in (('"@ID@"', '"ev%(i)08d"'), ('"@TIME@"', "%(t)d"), ('"@UPDATED@"', "%(u)d")):
        text = text.replace(slot, fmt)
    return text


def generate(kind: str, n: int) -> Iterator[bytes]:
    """The body of `n` events as `kind` (geojson | ndjson | csv), 64 KiB at a time."""
    template, start = feature_template(), 1_478_000_000_000
    head = {
        "geojson": f'{{"type":"FeatureCollection","metadata":{{"count":{n}}},"features":[',
        "csv": "id,time,updated,mag,place\r\n",
    }
    parts, size = [head.get(kind, "")], 0
    for i in range(n):
        values = {"i": i, "t": start + i * 1000, "u": start + i * 1000 + 500}
        if kind == "csv":
            line = f'ev{i:08d},{values["t"]},{values["u"]},{(i % 70) / 10 - 1:.1f},"{i} km N"\r\n'
        elif kind == "ndjson":
            line = template % values + "\n"
        else:
            line = ("," if i else "") + template % values
        parts.append(line)
        size += len(line)
        if size >= CHUNK:
            yield "".join(parts).encode()
            parts, size = [], 0
    parts.append("]}" if kind == "geojson" else "")
    yield "".join(parts).encode()


def gzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    for chunk in chunks:
        if out := packer.compress(chunk):
            yield out
    yield packer.flush()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        kind, n = parts.path.strip("/"), int(query.get("n", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        body = generate(kind, n)
        for chunk in gzipped(body) if "gzip" in query else body:
            self.wfile.write(chunk)

    def log_message(self, *args: Any) -> None:
        pass


def serve(port: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port.put(server.server_port)
    server.serve_forever()


# -- measuring (this process) --------------------------------------------------------------------
@dataclass
class Case:
    name: str
    items: int
    seconds: float
    peak_mb: float
    body_mb: float
    peak_reset: bool

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name: str, read: Callable[[], int], body_mb: float) -> Case:
    reset = reset_peak()
    started = time.perf_counter()
    items = read()
    seconds = time.perf_counter() - started
    case = Case(name, items, seconds, peak_mb(), body_mb, reset)
    progress(f"{name}: {items:,} items in {seconds:.1f} s, peak RSS {case.peak_mb:.0f} MB")
    return case


def body_size(kind: str, n: int) -> float:
    sample = min(n, 1000)
    return sum(len(c) for c in generate(kind, sample)) * (n / sample) / MB


def run(args: argparse.Namespace, base: str) -> dict[str, Any]:
    settings = dataclasses.replace(Settings(), http_max_buffered_bytes=4 << 30)
    http = Session(settings)
    big, small = args.items, args.baseline_items

    def url(kind: str, n: int, **extra: str) -> str:
        return f"{base}/{kind}?n={n}" + "".join(f"&{k}={v}" for k, v in extra.items())

    def count(items: Iterator[Any], each: Callable[[Any], Any] | None = None) -> int:
        n = 0
        for item in items:
            if each is not None:
                each(item)
            n += 1
        return n

    http.get_json(url("geojson", 10))  # warm: imports, connection pool, ijson backend
    count(http.json_items(url("geojson", 10), "features"))
    cases = [measure("idle (imports, a 10-event read)", lambda: 0, 0.0)]
    geo_small, geo_big = body_size("geojson", small), body_size("geojson", big)
    for n, size in ((small, geo_small), (big, geo_big)):
        cases.append(
            measure(
                "json_items",
                lambda n=n: count(http.json_items(url("geojson", n), "features")),
                size,
            )
        )
    cases.append(
        measure(
            "json_items, gzipped body",
            lambda: count(http.json_items(url("geojson", big, gzip="1"), "features")),
            geo_big,
        )
    )
    cases.append(
        measure(
            "json_items + to_row (the earthquakes job)",
            lambda: count(http.json_items(url("geojson", big), "features"), to_row),
            geo_big,
        )
    )
    cases.append(
        measure("ndjson", lambda: count(http.ndjson(url("ndjson", big))), body_size("ndjson", big))
    )
    cases.append(
        measure("csv_rows", lambda: count(http.csv_rows(url("csv", big))), body_size("csv", big))
    )
    # Last: what it leaves behind (a freed heap the allocator keeps) would count in the others.
    cases.append(
        measure(
            "get_json (baseline)",
            lambda: len(http.get_json(url("geojson", small))["features"]),
            geo_small,
        )
    )
    baseline = cases[-1]
    return {
        "items": big,
        "baseline_items": small,
        "cpus": os.cpu_count(),
        "ijson_backend": IJSON.backend_name,
        "cases": [
            {
                **dataclasses.asdict(case),
                "items_per_s": case.rate,
                "rss_vs_baseline": case.peak_mb / baseline.peak_mb,
                "rate_vs_baseline": case.rate / baseline.rate if case.items else None,
            }
            for case in cases
        ],
    }


def report(out: dict[str, Any]) -> str:
    lines = [
        f"Nightshift streaming benchmark: {out['items']:,} events streamed, get_json on"
        f" {out['baseline_items']:,}; ijson backend {out['ijson_backend']}, {out['cpus']} CPUs",
        "Peak RSS is this process's high-water mark during each case (reset before each).",
        "",
        f"{'reader':<44}{'items':>11}{'body MB':>9}{'peak RSS MB':>13}{'vs base':>9}"
        f"{'items/s':>10}{'vs base':>9}",
    ]
    for case in out["cases"]:
        rate = f"{case['items_per_s']:>10,.0f}" if case["items"] else f"{'':>10}"
        ratio = f"{case['rate_vs_baseline']:>8.2f}x" if case["items"] else f"{'':>9}"
        lines.append(
            f"{case['name']:<44}{case['items']:>11,}{case['body_mb']:>9,.0f}"
            f"{case['peak_mb']:>13,.0f}{case['rss_vs_baseline']:>8.2f}x{rate}{ratio}"
        )
    if not all(case["peak_reset"] for case in out["cases"]):
        lines.append("(/proc/self/clear_refs unavailable: each peak is the peak so far)")
    return "\n".join(lines)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="events streamed")
    parser.add_argument(
        "--baseline-items", type=int, default=100_000, help="events get_json holds (baseline)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if min(args.items, args.baseline_items) < 1:
        parser.error("the numbers of events must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    context = multiprocessing.get_context("fork")
    port = context.Queue()
    server = context.Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        out = run(args, f"http://127.0.0.1:{port.get(timeout=30)}")
    finally:
        server.terminate()
        server.join(timeout=10)
    print(json.dumps(out, indent=2) if args.json else report(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
