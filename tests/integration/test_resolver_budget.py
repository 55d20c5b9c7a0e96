"""The Platform API budget (worker/database/budget.py) against the HerokuApi stand-in: the first
call, the burst, the sustained rate, answers shared across threads, a 429's Retry-After; and
malformed URLs refused without a fragment of them. A fake clock: nothing sleeps."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from tests.faults import HerokuApi
from tests.support import wait_for
from worker.database.budget import Budget
from worker.database.errors import ResolverError
from worker.database.resolver import Resolved, parse, resolve, retry_after
from worker.redact import redact

TOKEN = "HRKU-budget-test-token-distinctive"
URL = "postgres://app:Budget-pw-S3CRET@127.0.0.1:5432/app"
MOVED = "postgres://app:Budget-pw-S3CRET@127.0.0.1:5433/app"
SOURCE = "Heroku Platform API (nightshift DATABASE_URL)"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[HerokuApi]:
    with HerokuApi({"DATABASE_URL": URL}, token=TOKEN, app="nightshift") as api:
        yield api


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings_for(api: HerokuApi) -> Settings:
    return Settings(heroku_api_key=TOKEN, heroku_app_name="nightshift", heroku_api_url=api.url)


def budget(clock: Clock, burst: int = 5, interval: float = 12.0) -> Budget:
    return Budget("test", burst, interval, clock=clock)


# -- the bucket ------------------------------------------------------------------------------
def test_the_first_call_is_free_then_a_burst_then_the_last_good_answer(api, clock):
    settings, limited = settings_for(api), budget(clock)

    first = resolve(settings, limited)
    assert api.requests == 1  # the first resolution of a process: always, and no token
    for _ in range(5):
        resolve(settings, limited)
    assert api.requests == 6  # the burst: a fresh fault re-resolves at once

    api.set("DATABASE_URL", MOVED)
    for _ in range(20):
        assert resolve(settings, limited) == first  # "not now": the last good resolution
    assert api.requests == 6


def test_after_the_burst_one_call_per_interval(api, clock):
    settings, limited = settings_for(api), budget(clock)
    for _ in range(6):
        resolve(settings, limited)
    assert api.requests == 6
    # Tokens refill continuously from the start: 0.0 now, one more 12 s later.
    api.set("DATABASE_URL", MOVED)
    clock.now += 11.5
    assert resolve(settings, limited).params["port"] == "5432"
    assert api.requests == 6
    clock.now += 0.5
    assert resolve(settings, limited).params["port"] == "5433"  # the moved URL, in ≤ 12 s
    assert api.requests == 7


def test_a_two_minute_outage_costs_the_burst_plus_one_call_per_interval(api, clock):
    settings, limited = settings_for(api), budget(clock)
    start = clock.now
    for step in range(241):  # a retrier asking every 0.5 s for two minutes
        clock.now = start + step * 0.5
        resolve(settings, limited)
    # 1 (the first, free) + 5 (the burst) + 120 s / 12 s (one per interval) = 16
    assert 15 <= api.requests <= 1 + 5 + 120 / 12
    clock.now += 3600
    for _ in range(100):
        resolve(settings, limited)
    assert api.requests <= 16 + 5  # an idle hour refills the burst, never more


def test_the_settings_declare_the_bucket():
    settings = Settings.from_env({"RESOLVER_BURST": "3", "RESOLVER_INTERVAL": "30"})
    assert (settings.resolver_burst, settings.resolver_interval) == (3, 30.0)
    assert (Settings().resolver_burst, Settings().resolver_interval) == (5, 12.0)


# -- sharing between threads -------------------------------------------------------------------
def in_threads(count: int, work) -> list[object]:
    """Run `work()` in `count` threads at once; their results (or exceptions), in order."""
    results: list[object] = [None] * count

    def one(i: int) -> None:
        try:
            results[i] = work()
        except Exception as exc:  # handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_callers_arriving_while_one_resolves_wait_for_that_answer(api, clock):
    settings, limited = settings_for(api), budget(clock)
    resolve(settings, limited)  # the first of the process
    clock.now += 3  # too old to be shared: the next caller asks
    api.hold()
    first: list[object] = []
    leader = threading.Thread(target=lambda: first.append(resolve(settings, limited)))
    leader.start()
    try:
        wait_for(api.requested.is_set, timeout=10, what="the leader's request")
        answers: list[object] = []
        followers = threading.Thread(
            target=lambda: answers.extend(in_threads(6, lambda: resolve(settings, limited)))
        )
        followers.start()
        wait_for(lambda: limited.waiting == 6, timeout=10, what="six callers to wait")
    finally:
        api.release()
    leader.join(timeout=10)
    followers.join(timeout=30)

    assert api.requests == 2  # the first, then one for seven callers
    assert len(answers) == 6 and all(answer == first[0] for answer in answers)
    assert isinstance(first[0], Resolved)


def test_a_fresh_answer_serves_other_threads_but_not_the_one_that_had_it(api, clock):
    settings, limited = settings_for(api), budget(clock)
    resolve(settings, limited)
    resolve(settings, limited)  # this thread had the first answer: it asks anew
    assert api.requests == 2

    clock.now += 1.0  # within SHARE_SECONDS: every other thread gets it for free
    assert all(isinstance(r, Resolved) for r in in_threads(3, lambda: resolve(settings, limited)))
    assert api.requests == 2
    clock.now += 1.5  # older than SHARE_SECONDS: a caller who never had it asks anew
    in_threads(1, lambda: resolve(settings, limited))
    assert api.requests == 3


# -- 429 ---------------------------------------------------------------------------------------
def test_a_429_is_one_non_fatal_line_naming_the_wait_and_nothing_is_asked_before_it(api, clock):
    settings, limited = settings_for(api), budget(clock)
    api.fail(429, retry_after="30")

    with pytest.raises(ResolverError) as raised:
        resolve(settings, limited)
    assert str(raised.value) == (
        f"cannot resolve the database URL from {SOURCE}:"
        " it answered 429 (rate limited): no call to it for 30 s"
    )
    assert not raised.value.fatal
    assert api.requests == 1

    api.heal()
    clock.now += 29  # tokens to spare, but the API said 30 s
    for _ in range(10):
        with pytest.raises(ResolverError, match="429"):  # no good answer yet: the last error
            resolve(settings, limited)
    assert api.requests == 1
    clock.now += 1
    assert resolve(settings, limited).params["password"] == "Budget-pw-S3CRET"
    assert api.requests == 2


def test_during_a_retry_after_callers_get_the_last_good_url(api, clock):
    settings, limited = settings_for(api), budget(clock)
    good = resolve(settings, limited)
    api.fail(429, retry_after="120")
    with pytest.raises(ResolverError, match="no call to it for 120 s"):
        resolve(settings, limited)  # the call that met the 429 says so

    clock.now += 100
    assert [resolve(settings, limited) for _ in range(5)] == [good] * 5
    assert api.requests == 2


def test_a_retry_after_in_the_http_date_form_is_honoured(api, clock):
    settings, limited = settings_for(api), budget(clock)
    resolve(settings, limited)
    api.fail(429, retry_after=email.utils.formatdate(time.time() + 90, usegmt=True))
    with pytest.raises(ResolverError, match=r"no call to it for (8[89]|90) s"):
        resolve(settings, limited)

    api.heal()
    clock.now += 85
    resolve(settings, limited)
    assert api.requests == 2
    clock.now += 6
    resolve(settings, limited)
    assert api.requests == 3


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), (None, 60.0), ("soon", 60.0), ("-5", 60.0)],
)
def test_retry_after_headers(header, seconds):
    assert retry_after(header) == seconds
    past = email.utils.formatdate(time.time() - 10, usegmt=True)
    assert retry_after(past) == 0.0


# -- which sources are budgeted ----------------------------------------------------------------
def test_the_command_source_is_budgeted_too(tmp_path, clock):
    counter, url_file = tmp_path / "calls", tmp_path / "url"
    url_file.write_text(URL)
    script = f"printf x >> {counter}; cat {url_file}"  # counts its calls
    settings = Settings(database_url_command=f"sh -c '{script}'")
    limited = budget(clock, burst=2)

    for _ in range(10):
        resolve(settings, limited)

    assert counter.read_text() == "xxx"  # the first, then the burst of 2


def test_the_file_source_is_free_and_read_afresh_each_time(tmp_path):
    path = tmp_path / "database_url"
    settings = Settings(database_url_file=path)
    for port in range(5000, 5020):
        path.write_text(URL.replace("5432", str(port)))
        assert resolve(settings).params["port"] == str(port)


# -- malformed URLs ------------------------------------------------------------------------------
AT_PASSWORD = "Zq9x@Xk7y@Wm3z"
FRAGMENTS = ("Zq9x", "Xk7y", "Wm3z", AT_PASSWORD, "Xk7y@Wm3z@127.0.0.1")


def test_a_password_holding_at_signs_is_refused_without_a_fragment(api, clock):
    url = f"postgresql://app:{AT_PASSWORD}@127.0.0.1:5432/db"
    api.set("DATABASE_URL", url)

    with pytest.raises(ResolverError) as raised:
        resolve(settings_for(api), budget(clock))

    message = str(raised.value)
    assert message == (
        f"cannot resolve the database URL from {SOURCE}:"
        " its user or password holds '@': percent-encode it as %40"
    )
    assert not raised.value.fatal  # the config var may be mid-update: retried within the budget
    assert "\n" not in message
    for fragment in FRAGMENTS:  # registered: every piece is masked wherever it turns up
        masked = redact(f"x {fragment} y")
        assert not any(piece in masked for piece in FRAGMENTS[:3]), masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:Ab/cdEf@db.example.com:5432/db",  # '/' in the password
        "postgresql://app:Ab?c@Ef@db.example.com/db",  # '?' and '@'
        "postgres://someone:Secr3t-x@[db.example.com/x",  # libpq refuses it
        "postgresql://app:pw@host:port/db",
    ],
)
def test_other_malformed_urls_are_one_line_naming_the_source_only(url):
    with pytest.raises(ResolverError) as raised:
        parse(url, "DATABASE_URL_FILE (/run/secrets/db)")
    message = str(raised.value)
    assert message.startswith(
        "cannot resolve the database URL from DATABASE_URL_FILE (/run/secrets/db): "
    )
    assert "://" not in message and "app" not in message and "Secr3t" not in message
    assert not raised.value.fatal


def test_a_file_caught_mid_rewrite_is_refused_then_read_again(tmp_path: Path):
    path = tmp_path / "database_url"
    settings = Settings(database_url_file=path)
    path.write_text("postgresql://app:Half-wr1tten%4")  # cut in the middle of an escape
    with pytest.raises(ResolverError, match=r"from DATABASE_URL_FILE \(.*\): it is not a valid"):
        resolve(settings)
    path.write_text(URL)
    assert resolve(settings).params["port"] == "5432"
