"""The throughput benchmark's rows: 8 columns, deterministic from (count, seed), made lazily.

Every method of bench/throughput.py reads the same stream of dicts from `generate`, inside its
timing, so none holds the rows before it starts (peak RSS is the method's own) and each pays
the same cost for making them. That cost is kept small: one 64-bit random draw per row picks
each value from pools drawn once per seed, so the generator runs several times faster than
the fastest method (the report shows it as "generator only"). No worker import here: the
baselines must not pay for the worker's modules in their RSS.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

COLUMNS = {
    "id": "bigint",
    "observed_at": "timestamptz",
    "name": "text",
    "note": "text",
    "amount": "numeric(12,2)",
    "quantity": "integer",
    "attributes": "jsonb",
    "active": "boolean",
}
KEY = "id"
# Jobs (and dlt resources) yield pages, as an API job does: one list per page of this many.
PAGE = 1000
FIRST_ID = 10_000_000_000  # past int4, as a real bigint key would be
POOL = 1024  # values per column, each picked by 10 bits of the row's draw

_PLACES = ("Reno", "Anchorage", "Hilo", "Ridgecrest", "Petrolia", "San Simeón", "Coso", "Aguanga")
_WORDS = ("north", "ridge", "bay", "valley", "station", "pier", "creek", "summit", "dock", "yard")
_SOURCES = ("api", "feed", "manual", "backfill")
_TAGS = ("reviewed", "automatic", "late", "revised", "estimated", "flagged")


def _pools(rng: random.Random) -> tuple[list[Any], ...]:
    names, notes, amounts, quantities, attributes = [], [], [], [], []
    for _ in range(POOL):
        name = f"{rng.choice(_PLACES)} {rng.choice(_WORDS)} {rng.randint(1, 999)}"
        if rng.random() < 0.1:
            name += f', "{rng.choice(_WORDS)}" wing'  # CSV must quote it
        names.append(name)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16)))
        roll = rng.random()
        notes.append(
            None
            if roll < 0.1
            else f"{words},\nsee {rng.choice(_PLACES)}"  # a newline inside a field
            if roll < 0.15
            else words.capitalize() + "."
        )
        amounts.append(
            None if rng.random() < 0.03 else Decimal(rng.randint(-100_000, 10_000_000)).scaleb(-2)
        )
        quantities.append(None if rng.random() < 0.05 else rng.randint(0, 50_000))
        attributes.append(
            {
                "source": rng.choice(_SOURCES),
                "tags": rng.sample(_TAGS, rng.randint(0, 3)),
                "score": round(rng.random() * 100, 3),
                "rev": rng.randint(1, 9),
            }
        )
    return names, notes, amounts, quantities, attributes


def generate(count: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    """`count` rows in key order (ascending ids with gaps, one every 13 s), some values null."""
    rng = random.Random(seed)
    names, notes, amounts, quantities, attributes = _pools(rng)
    draw = rng.getrandbits
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    delta = dt.timedelta
    ident = FIRST_ID
    for i in range(count):
        r = draw(64)
        ident += 1 + (r & 3)
        yield {
            "id": ident,
            "observed_at": start + delta(seconds=i * 13, microseconds=(r >> 52) * 244),
            "name": names[(r >> 2) & 1023],
            "note": notes[(r >> 12) & 1023],
            "amount": amounts[(r >> 22) & 1023],
            "quantity": quantities[(r >> 32) & 1023],
            "attributes": attributes[(r >> 42) & 1023],
            "active": (r >> 62) != 0,  # three in four
        }


def pages(count: int, seed: int = 42, size: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    """The same rows as `generate`, in lists of `size`."""
    return pages_of(generate(count, seed), size)


def pages_of(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in lists of `size`."""
    page: list[dict[str, Any]] = []
    for row in rows:
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page
