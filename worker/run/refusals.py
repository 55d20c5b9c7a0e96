"""What no run can serve, settled once: a queued request, or a run cut short, whose parameters
no run can take is recorded as a run with the status `refused`, its error the one-line reason
(`request 12 refused: since '10000-01-01' is not a date (0001-01-01 to 9999-12-31)`).

A refused run is the history's record of it, so `runs`, `runs --json` and the status page show
it as they show any run; resume, the failure streak and catch-up pass it over, as they pass
over a missed fire time. The request is marked refused (`nightshift.triggers.refused`) and
claimed, in the same statement, so it is settled once whatever the number of workers; the
caller logs it (`request_refused`) and alerts once. The job's next requests then run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.run.errors import RequestRefused
from worker.run.request import cleared, parse_stored
from worker.store import claims
from worker.store.records import CutShortRun, StoredRequest
from worker.text import stored as storable


@dataclass(frozen=True)
class Refusal:
    """A request or a resume settled as a `refused` run."""

    job: str
    run_id: int  # the refused run that records it
    error: str  # the one-line reason, as recorded
    request_id: int | None = None  # the queued request refused
    resumes: int | None = None  # the run cut short that cannot be resumed


def why_unservable(stored: StoredRequest) -> str | None:
    """Why no run can serve the pending request `stored`; None when a run can."""
    if stored.job_retired:
        return f"no deployed code declares job {stored.job!r}"
    try:
        parse_stored(stored)
    except RequestRefused as exc:
        return str(exc)
    return None


def refuse_request(cur: Any, stored: StoredRequest, why: str, dyno: str) -> Refusal | None:
    """Settle the pending request `stored` as refused, for `why`. None when it is no longer
    pending: another worker claimed or settled it, and says so itself."""
    error = storable(f"request {stored.id} refused: {why}")
    run_id = claims.refuse_request(cur, stored.id, error, dyno, _cleared(stored.params))
    return None if run_id is None else Refusal(stored.job, run_id, error, request_id=stored.id)


def refuse_resume(cur: Any, cut_short: CutShortRun, why: str, dyno: str) -> Refusal | None:
    """Settle `cut_short`, which no run can resume as it recorded (`why`), as a refused resume
    that it names as its `resumed_by`. None when someone resumed or settled it first."""
    error = storable(f"resume of run {cut_short.id} refused: {why}")
    run_id = claims.refuse_resume(cur, cut_short.id, error, dyno)
    return None if run_id is None else Refusal(cut_short.job, run_id, error, resumes=cut_short.id)


def _cleared(params: str) -> dict[str, Any] | None:
    """A refused request's parameters with a credential's value cleared, as for one served;
    None when there is nothing to clear or they cannot be read."""
    try:
        decoded = json.loads(params)
    except (ValueError, RecursionError):
        return None
    return cleared(decoded) if isinstance(decoded, dict) else None
