"""The transaction that opens a run: lock the job, claim what the run serves, record it.

In one transaction, under the job's advisory lock: recognise a replay of ourselves (a COMMIT
whose answer was lost), refuse a fire time or a resume another process already served, claim
a queued request, record the run, mark the job's dead runs abandoned, and read its state.

A claimed request is read as text and checked here (`parse_stored`): one no run can serve is
left pending (RequestRefused) for the queue watcher to settle as refused. Once claimed, the
value of a credential-named parameter is cleared from the queue: the run alone carries it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from worker.registry import Job
from worker.run.errors import AlreadyDone, JobBusy, LoadFailed, RequestRefused
from worker.run.request import RunRequest, cleared, parse_stored
from worker.store import claims, queries
from worker.store.migrate import migrate
from worker.store.records import QueuedRequest


@dataclass(frozen=True)
class Opened:
    """What the opening transaction established."""

    run_id: int
    request: RunRequest  # as claimed: a queued run carries its request's parameters
    state: dict[str, Any]  # the job's saved state
    abandoned: list[int] = field(default_factory=list)  # dead runs it found


class OpenRun:
    """`db.run(OpenRun(...))`: replayable, since the run is recorded under a token."""

    def __init__(self, job: Job, request: RunRequest, dyno: str, ensure_schema: bool) -> None:
        self.job = job
        self.request = request
        self.dyno = dyno
        self.ensure_schema = ensure_schema
        self.token = str(uuid.uuid4())
        self.attempts = 0
        self._claimed: QueuedRequest | None = None  # as the latest attempt claimed it

    def __call__(self, cur: Any) -> Opened:
        job = self.job
        if self.ensure_schema:
            migrated = migrate(cur, [job], every_job=False)
            if migrated.refused:  # the table is not what the job declares: load nothing
                raise LoadFailed(
                    f"{'; '.join(map(str, migrated.refused))} (see `python -m worker migrate`)"
                )
        if not queries.try_lock(cur, job.name):
            raise JobBusy(f"job {job.name!r} is already running elsewhere")
        self.attempts += 1
        # Only an attempt after another can find its run recorded: skip the round trip before.
        mine = queries.run_by_token(cur, self.token) if self.attempts > 1 else None
        if mine is not None:  # a replay after a COMMIT whose answer was lost: it is ours
            return Opened(
                mine, self._as_first_claimed(cur, mine), queries.load_state(cur, job.name)
            )
        try:
            request = self._claim(cur)
        except AlreadyDone:
            queries.unlock(cur, job.name)
            raise
        run_id = queries.start_run(
            cur, job.name, request.kind, self.dyno, request.recorded_params(),
            self.token, request.fire_time, request.resumes,
        )  # fmt: skip
        if request.request_id is not None:
            claims.link_request(cur, request.request_id, run_id, cleared(request.params))
        if request.resumes is not None:
            queries.mark_resumed(cur, request.resumes, run_id)
        abandoned = queries.abandon_dead_runs(cur, job.name, run_id, f"run {run_id}")
        return Opened(run_id, request, queries.load_state(cur, job.name), abandoned)

    def _claim(self, cur: Any) -> RunRequest:
        """Under the job's lock: refuse a fire time already served or a run already resumed;
        take the oldest queued request."""
        request = self.request
        if request.resumes is not None:
            by = queries.resumed_by(cur, request.resumes)
            if by is not None:
                raise AlreadyDone(f"run {by} already resumed run {request.resumes}")
        if request.fire_time is not None:
            served_by = queries.ran_for_fire_time(cur, self.job.name, request.fire_time)
            if served_by is not None:
                raise AlreadyDone(
                    f"run {served_by} already served the fire time {request.fire_time.isoformat()}"
                )
        if not request.queued:
            return request
        stored = claims.claim_request(cur, self.job.name, self.dyno)
        if stored is None:
            raise AlreadyDone("no queued request left for it (another worker took it)")
        try:
            self._claimed = parse_stored(stored)
        except RequestRefused as exc:  # rolled back: the queue watcher settles it
            raise RequestRefused(f"request {stored.id} cannot be served: {exc}") from None
        return request.with_queued(self._claimed)

    def _as_first_claimed(self, cur: Any, run_id: int) -> RunRequest:
        """The request as the attempt that recorded the run claimed it: as it parsed it then
        (the queue keeps a credential's value cleared), else as the queue holds it."""
        if not self.request.queued:
            return self.request
        if self._claimed is not None:
            return self.request.with_queued(self._claimed)
        stored = claims.request_of_run(cur, run_id)
        return self.request if stored is None else self.request.with_queued(parse_stored(stored))
