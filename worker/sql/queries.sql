-- Every bookkeeping query, loaded once by worker/store.py. `-- name: x` starts query x.

-- name: start_run
-- Idempotent on the token: a replay returns the run the first attempt created.
INSERT INTO nightshift.runs (job, trigger, dyno, pid, params, token)
VALUES (%(job)s, %(trigger)s, %(dyno)s, %(pid)s, %(params)s, %(token)s)
ON CONFLICT (token) DO UPDATE SET token = EXCLUDED.token
RETURNING id;

-- name: save_progress
-- In the batch's own transaction: absolute totals, so a replayed batch counts once.
UPDATE nightshift.runs
SET rows = %(rows)s, changed = %(changed)s, batches = %(batches)s
WHERE id = %(run_id)s;

-- name: save_state
INSERT INTO nightshift.job_state (job, state, run_id, updated_at)
VALUES (%(job)s, %(state)s, %(run_id)s, now())
ON CONFLICT (job) DO UPDATE
SET state = EXCLUDED.state, run_id = EXCLUDED.run_id, updated_at = EXCLUDED.updated_at;

-- name: load_state
SELECT state FROM nightshift.job_state WHERE job = %(job)s;

-- name: run_batches
SELECT batches FROM nightshift.runs WHERE id = %(run_id)s;

-- name: finish_run
UPDATE nightshift.runs
SET status = %(status)s, error = %(error)s, reconnects = %(reconnects)s, finished_at = now()
WHERE id = %(run_id)s AND status = 'running';

-- name: try_lock_job
-- Session-level: held while the run's session lives, released when it ends or dies.
SELECT pg_try_advisory_lock(%(namespace)s, hashtext(%(job)s));

-- name: unlock_job
SELECT pg_advisory_unlock(%(namespace)s, hashtext(%(job)s));

-- name: abandon_dead_runs
-- Called while holding the job's lock: any other run still marked running has died.
UPDATE nightshift.runs
SET status = 'abandoned', finished_at = now(),
    error = 'the process running it died (found by ' || %(found_by)s || ')'
WHERE job = %(job)s AND status = 'running' AND id IS DISTINCT FROM %(run_id)s
RETURNING id;

-- name: jobs_with_running_runs
SELECT DISTINCT job FROM nightshift.runs WHERE status = 'running';

-- name: recent_runs
SELECT id, job, trigger, status, rows, changed, batches, reconnects, started_at, finished_at,
       error, dyno
FROM nightshift.runs
WHERE %(job)s::text IS NULL OR job = %(job)s
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: last_runs
SELECT DISTINCT ON (job) job, id, status, started_at, finished_at, rows, error, dyno
FROM nightshift.runs
ORDER BY job, started_at DESC, id DESC;

-- name: server_facts
SELECT current_setting('server_version'),
       coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
       pg_is_in_recovery(),
       current_setting('default_transaction_read_only') = 'on',
       current_database();
