-- The worker's side of the queue of run requests (nightshift.triggers), loaded once by
-- worker/store/claims.py: claiming a request for a run, and settling once what no run can
-- serve. `-- name: x` starts query x. Values are read as text (params as JSON, dates through
-- nightshift.date_text): no row can make the driver fail; worker.run.request parses them.

-- name: claim_request
-- Under the job's lock, the oldest request for it; SKIP LOCKED so claimers never wait.
UPDATE nightshift.triggers SET claimed_at = now(), claimed_by = %(dyno)s
WHERE id = (
    SELECT id FROM nightshift.triggers
    WHERE job = %(job)s AND claimed_at IS NULL
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING id, job, params::text, full_refresh, nightshift.date_text(since),
          nightshift.date_text(until);

-- name: request_of_run
SELECT id, job, params::text, full_refresh, nightshift.date_text(since),
       nightshift.date_text(until)
FROM nightshift.triggers WHERE run_id = %(run_id)s;

-- name: link_request
-- %(params)s: the request's parameters with a credential's value cleared (`***`), or NULL
-- when none is named so. Once claimed, the run alone carries the value.
UPDATE nightshift.triggers
SET run_id = %(run_id)s, params = coalesce(%(params)s::jsonb, params)
WHERE id = %(request_id)s;

-- name: oldest_pending_requests
-- Each job's oldest pending request, as text: the one a run of the job would claim next, for
-- the queue watcher to check first. `retired`: no deployed code declares its job any more.
SELECT t.id, t.job, t.params::text, t.full_refresh, nightshift.date_text(t.since),
       nightshift.date_text(t.until), coalesce(j.retired, true)
FROM nightshift.triggers t
LEFT JOIN nightshift.jobs j ON j.name = t.job
WHERE t.id IN (SELECT min(id) FROM nightshift.triggers WHERE claimed_at IS NULL GROUP BY job)
ORDER BY t.id;

-- name: refuse_request
-- Settle a pending request no run can serve, once, in one statement: a `refused` run with the
-- reason, and the request claimed, marked refused, linked to that run (a credential's value
-- cleared, as for a request served). No row when it is no longer pending (another worker
-- claimed or settled it). The run's id is drawn first, so each row names the other.
WITH run AS (SELECT nextval(pg_get_serial_sequence('nightshift.runs', 'id')) AS id),
settled AS (
    UPDATE nightshift.triggers
    SET claimed_at = now(), claimed_by = %(dyno)s, refused = %(reason)s,
        run_id = (SELECT id FROM run), params = coalesce(%(params)s::jsonb, params)
    WHERE id = %(request_id)s AND claimed_at IS NULL
    RETURNING job, run_id
)
INSERT INTO nightshift.runs (id, job, trigger, status, dyno, pid, finished_at, error)
SELECT run_id, job, 'queued', 'refused', %(dyno)s, %(pid)s, now(), %(reason)s FROM settled
RETURNING id;

-- name: refuse_resume
-- Settle a run cut short that no run can resume as it was asked, once: a `refused` resume
-- with the reason, which the cut-short run names as its `resumed_by` (so it is offered no
-- more). No row when someone resumed or settled it already.
WITH run AS (SELECT nextval(pg_get_serial_sequence('nightshift.runs', 'id')) AS id),
marked AS (
    UPDATE nightshift.runs SET resumed_by = (SELECT id FROM run)
    WHERE id = %(resumes)s AND resumed_by IS NULL
    RETURNING job
)
INSERT INTO nightshift.runs (id, job, trigger, status, dyno, pid, finished_at, error, resumes)
SELECT (SELECT id FROM run), job, 'resume', 'refused', %(dyno)s, %(pid)s, now(), %(reason)s,
       %(resumes)s
FROM marked
RETURNING id;
