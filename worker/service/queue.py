"""Picks up queued run requests: LISTEN/NOTIFY for speed, polling for certainty.

`python -m worker trigger JOB` (or a plain INSERT into nightshift.triggers) notifies the
channel `nightshift_triggers`. This thread listens on its own session and, on a notification
or every POLL_SECONDS (a NOTIFY sent while we were reconnecting is lost), reads each job's
oldest pending request (the one its next run claims) and hands the job to the worker. The run
claims the request itself, under the job's lock and FOR UPDATE SKIP LOCKED, so each request
runs exactly once whichever worker wins.

A request no run can serve (a window beyond the dates a run can take, parameters that are
not a JSON object of strings, a job no deployed code declares) would stop its job's queue, as
a run claims the oldest first: it is settled here instead, once, as a `refused` run
(worker.run.refusals), and the job's next request is looked at in the same poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from config import Settings
from worker.database import Database, DatabaseError
from worker.database.notify import Channel
from worker.errors import ShutdownRequested
from worker.logs import get_logger
from worker.run.refusals import Refusal, refuse_request, why_unservable
from worker.store import claims
from worker.store.records import StoredRequest

log = get_logger("nightshift.listener")

CHANNEL = "nightshift_triggers"
# The fallback: a request whose NOTIFY was lost still runs within this many seconds.
POLL_SECONDS = 5.0
# Rounds of settling in one look at most (each settles the oldest request of every job whose
# oldest no run can serve): a long backlog of them (queued before migration 0008) is settled
# over several looks, one right after the other, and the jobs ready meanwhile are handed on.
MAX_SETTLING_ROUNDS = 20


class QueueWatcher:
    """A thread that hands `dispatch(job)` each job of `known` whose next request a run can
    serve, and `refused(refusal)` each request it settled as refused (to log and alert)."""

    def __init__(
        self,
        settings: Settings,
        dispatch: Callable[[str], None],
        refused: Callable[[Refusal], None],
        known: Collection[str],
    ) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.refused = refused
        self.known = frozenset(known)
        self._foreign: set[str] = set()  # jobs of another release, said once each
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queue-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look for pending requests now (e.g. after a run, in case more are queued)."""
        self._wake.set()

    def close(self) -> None:
        """Stop listening and claiming; wait briefly for the thread (it only ever waits)."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        name = f"nightshift:listener@{self.settings.dyno}"
        with Database(self.settings, name, stop=self.stop) as db:
            # Every (re)connect listens again; the poll that follows it catches what was missed.
            channel = Channel(db, CHANNEL)
            listening = False
            while not self.stop.is_set():
                try:
                    self._wake.clear()
                    jobs = self._look(db)
                    if not listening:
                        log.info("trigger_listener_started", channel=CHANNEL, poll_s=POLL_SECONDS)
                        listening = True
                    for job in jobs:
                        self.dispatch(job)
                    channel.wait(POLL_SECONDS, give_up=self._should_look_now)
                except ShutdownRequested:
                    return
                except DatabaseError as exc:
                    log.error("trigger_poll_failed", error=str(exc))
                    self.stop.wait(POLL_SECONDS)
                except Exception as exc:  # unforeseen: this thread is the queue, it must go on
                    log.error("trigger_poll_failed", error=f"{type(exc).__name__}: {exc}")
                    log.debug("trigger_poll_failed_here", exc_info=exc)
                    self.stop.wait(POLL_SECONDS)

    def _look(self, db: Database) -> list[str]:
        """The jobs whose oldest pending request a run can serve. Each oldest request no run
        can serve is settled as refused on the way, and the job's next one looked at."""
        for _ in range(MAX_SETTLING_ROUNDS):
            ready, settled = [], False
            for stored in db.run(claims.oldest_pending_requests):
                why = why_unservable(stored)
                if why is not None:
                    self._settle(db, stored, why)
                    settled = True
                elif stored.job in self.known:
                    ready.append(stored.job)
                elif stored.job not in self._foreign:  # another release's: its workers serve it
                    self._foreign.add(stored.job)
                    log.warning("trigger_for_unknown_job", job=stored.job, request_id=stored.id)
            if not settled:
                return ready
        self._wake.set()  # more may wait to be settled: look again at once
        return ready

    def _settle(self, db: Database, stored: StoredRequest, why: str) -> None:
        refusal = db.run(lambda cur: refuse_request(cur, stored, why, self.settings.dyno))
        if refusal is not None:  # None: another worker settled it, and says so
            self.refused(refusal)

    def _should_look_now(self) -> bool:
        return self.stop.is_set() or self._wake.is_set()
