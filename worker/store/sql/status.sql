-- What the status page reads, loaded once by worker/store/status.py. `-- name: x` starts query x.
-- Nothing here writes: the page's "Run now" queues through queries.enqueue_request.

-- name: recent_runs_per_job
-- Each job's last %(per_job)s runs, newest first: what the page plots.
SELECT id, job, trigger, status, rows, changed, batches, reconnects, started_at, finished_at,
       error, dyno, rejected
FROM (
    SELECT *, row_number() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) AS n
    FROM nightshift.runs
) AS numbered
WHERE n <= %(per_job)s
ORDER BY job, started_at DESC, id DESC;

-- name: run_history
-- The run history, narrowed by job and status when given.
SELECT id, job, trigger, status, rows, changed, batches, reconnects, started_at, finished_at,
       error, dyno, rejected
FROM nightshift.runs
WHERE (%(job)s::text IS NULL OR job = %(job)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: run_detail
-- One run with what it was asked to do, and the queued request it served, if any.
SELECT r.id, r.job, r.trigger, r.status, r.rows, r.changed, r.batches, r.reconnects,
       r.started_at, r.finished_at, r.error, r.dyno, r.rejected,
       r.params, r.scheduled_for, r.resumes, r.resumed_by,
       t.id, t.requested_by, t.requested_at
FROM nightshift.runs r
LEFT JOIN nightshift.triggers t ON t.run_id = r.id
WHERE r.id = %(run_id)s;

-- name: rejects_of_run
SELECT id, job, run_id, key::text, "row"::text, error, rejected_at
FROM nightshift.rejects
WHERE run_id = %(run_id)s
ORDER BY id
LIMIT %(limit)s;

-- name: jobs_in_history
-- Every job the run history names, declared or not (a retired job's runs stay readable).
SELECT DISTINCT job FROM nightshift.runs ORDER BY job;
