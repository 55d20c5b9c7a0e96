-- Every bookkeeping query, loaded once by worker/store/queries.py. `-- name: x` starts query x.

-- name: start_run
-- Idempotent on the token: a replay returns the run the first attempt created.
INSERT INTO nightshift.runs (job, trigger, dyno, pid, params, token, scheduled_for, resumes)
VALUES (%(job)s, %(kind)s, %(dyno)s, %(pid)s, %(params)s, %(token)s, %(scheduled_for)s,
        %(resumes)s)
ON CONFLICT (token) DO UPDATE SET token = EXCLUDED.token
RETURNING id;

-- name: save_progress
-- In the batch's own transaction: absolute totals, so a replayed batch counts once.
UPDATE nightshift.runs
SET rows = %(rows)s, changed = %(changed)s, batches = %(batches)s, rejected = %(rejected)s
WHERE id = %(run_id)s;

-- name: save_batch
-- A whole batch as ONE statement, sent outside a transaction block so it is its own
-- transaction: the run's progress (absolute totals, so a replayed batch counts once), the
-- job's state and the rows (an INSERT, or a SELECT of nothing), in one round trip. Its row
-- count is the rows the INSERT changed. `changed` holds those of the batches before: counting
-- this batch's in the statement (RETURNING into a CTE) costs the server a tenth more per row;
-- the next batch, or the run's finish, records them.
-- Composed by queries.batch_statement (the names in braces), not parameterised: its rows go
-- in through execute_values.
WITH progress AS (
    UPDATE nightshift.runs
    SET rows = {rows_total}, changed = {changed_before}, batches = {batches}, rejected = {rejected}
    WHERE id = {run_id}
),
state AS (
    INSERT INTO nightshift.job_state (job, state, run_id, updated_at)
    SELECT {job}, {state}::jsonb, {run_id}, now() WHERE {save_state}
    ON CONFLICT (job) DO UPDATE
    SET state = EXCLUDED.state, run_id = EXCLUDED.run_id, updated_at = EXCLUDED.updated_at
)
{rows};

-- name: save_reject
-- `held`: what stood in the job's table for the row's key (migration 0009).
INSERT INTO nightshift.rejects (job, run_id, key, "row", error, held)
VALUES (%(job)s, %(run_id)s, %(key)s, %(row)s, %(error)s, %(held)s::jsonb);

-- name: run_progress
-- What the database holds of a run: after a failover it may be less than the run saw commit.
SELECT rows, changed, batches, rejected FROM nightshift.runs WHERE id = %(run_id)s;

-- name: save_state
INSERT INTO nightshift.job_state (job, state, run_id, updated_at)
VALUES (%(job)s, %(state)s, %(run_id)s, now())
ON CONFLICT (job) DO UPDATE
SET state = EXCLUDED.state, run_id = EXCLUDED.run_id, updated_at = EXCLUDED.updated_at;

-- name: load_state
SELECT state FROM nightshift.job_state WHERE job = %(job)s;

-- name: finish_run
-- `changed`: the run's own count, recorded when the database holds every batch it counts
-- (a batch's statement records those of the batches before it).
UPDATE nightshift.runs
SET status = %(status)s, error = %(error)s, reconnects = %(reconnects)s, finished_at = now(),
    changed = CASE WHEN batches = %(batches)s THEN coalesce(%(changed)s, changed) ELSE changed END
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
       error, dyno, rejected, params
FROM nightshift.runs
WHERE %(job)s::text IS NULL OR job = %(job)s
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: last_runs
SELECT DISTINCT ON (job) job, id, status, started_at, finished_at, rows, error, dyno, rejected
FROM nightshift.runs
ORDER BY job, started_at DESC, id DESC;

-- name: server_facts
SELECT current_setting('server_version'),
       coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
       pg_is_in_recovery(),
       current_setting('default_transaction_read_only') = 'on',
       current_database();

-- name: ran_for_fire_time
-- Under the job's lock: has another process already served this fire time?
SELECT id FROM nightshift.runs WHERE job = %(job)s AND scheduled_for = %(fire_time)s;

-- name: last_started
-- When each job's latest run started, for catch-up. A refused run ran nothing: passed over.
-- So is a start no run of ours can have had (infinity, BC, year 10000, later than now): the
-- driver could not read it, or it would hide every fire time missed since.
SELECT job, max(started_at) FROM nightshift.runs
WHERE status <> 'refused' AND started_at BETWEEN '1900-01-01' AND now()
GROUP BY job;

-- name: running_now
-- Runs in progress: marked running AND their job's lock is held by a live session.
SELECT r.job, r.id, r.dyno, r.started_at
FROM nightshift.runs r
WHERE r.status = 'running' AND EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid::bigint = %(namespace)s
      AND l.objid::bigint = (hashtext(r.job)::bigint + 4294967296) %% 4294967296
);

-- name: sync_jobs
-- The deployed code's jobs: add or update them, retire the rest.
WITH declared AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb) AS j(name text, schedule text, timezone text)
), upserted AS (
    INSERT INTO nightshift.jobs (name, schedule, timezone, retired, updated_at)
    SELECT name, schedule, timezone, false, now() FROM declared
    ON CONFLICT (name) DO UPDATE
    SET schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone, retired = false,
        updated_at = EXCLUDED.updated_at
    WHERE (jobs.schedule, jobs.timezone, jobs.retired)
          IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.timezone, false)  -- write only on change
    RETURNING name
)
UPDATE nightshift.jobs SET retired = true, updated_at = now()
WHERE %(retire_others)s AND name NOT IN (SELECT name FROM declared) AND NOT retired;

-- name: enqueue_request
-- No row when the request joined an identical one still pending (migration 0006).
INSERT INTO nightshift.triggers (job, params, full_refresh, since, until, requested_by)
VALUES (%(job)s, %(params)s, %(full_refresh)s, %(since)s, %(until)s, %(requested_by)s)
RETURNING id, requested_at;

-- name: joined_request
-- The pending request the transaction's last INSERT joined, as its trigger recorded it.
SELECT id, requested_at FROM nightshift.triggers
WHERE id = nullif(current_setting('nightshift.joined_request', true), '')::bigint;

-- name: run_by_token
SELECT id FROM nightshift.runs WHERE token = %(token)s;

-- name: runs_to_resume
-- Each job's latest run, when a shutdown or a crash cut it short and nobody resumed it yet.
-- Manual runs are left alone: whoever stopped them chose to.
-- Its params as JSON text: worker.run.request.resume_request reads them, or refuses them.
-- Missed and refused runs ran nothing: passed over.
SELECT job, id, params::text FROM (
    SELECT DISTINCT ON (job) job, id, params, status, trigger, resumed_by
    FROM nightshift.runs
    WHERE status NOT IN ('missed', 'refused')
    ORDER BY job, started_at DESC, id DESC
) AS latest
WHERE status IN ('interrupted', 'abandoned') AND resumed_by IS NULL
  AND trigger IN ('schedule', 'catchup', 'queued', 'resume');
-- (A run whose credential parameter was recorded masked is offered too: its value is kept
-- nowhere, so resume_request refuses it, naming the parameter — a refused resume, one alert,
-- rather than a nightly load silently never resumed.)

-- name: bookkeeping_exists
-- Before the first `migrate` there is no run history to show.
SELECT to_regclass('nightshift.runs') IS NOT NULL;

-- name: migrations_table_exists
SELECT to_regclass('nightshift.schema_migrations') IS NOT NULL;

-- name: migrations_applied
SELECT count(*) FROM nightshift.schema_migrations;

-- name: record_missed_fire_time
-- Nobody ran this fire time and it is too late to: say so, unless a run served it after all.
INSERT INTO nightshift.runs (job, trigger, status, dyno, pid, scheduled_for, finished_at, error)
VALUES (%(job)s, 'schedule', 'missed', %(dyno)s, %(pid)s, %(fire_time)s, now(), %(reason)s)
ON CONFLICT (job, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
RETURNING id;

-- name: list_rejects
SELECT id, job, run_id, key::text, "row"::text, error, rejected_at, held::text
FROM nightshift.rejects
WHERE %(job)s::text IS NULL OR job = %(job)s
ORDER BY id
LIMIT %(limit)s;

-- name: delete_rejects
DELETE FROM nightshift.rejects WHERE id = ANY(%(ids)s);

-- name: resumed_by
-- Under the job's lock: still waiting to be resumed?
SELECT resumed_by FROM nightshift.runs WHERE id = %(run_id)s;

-- name: mark_resumed
UPDATE nightshift.runs SET resumed_by = %(by)s WHERE id = %(run_id)s AND resumed_by IS NULL;

-- name: failed_runs_before
-- How many of the job's runs failed in a row just before this one. Interrupted, abandoned,
-- missed and refused runs are passed over: they say nothing of whether the job works.
SELECT count(*) FROM nightshift.runs
WHERE job = %(job)s AND id < %(run_id)s AND status = 'failed'
  AND id > coalesce((
      SELECT max(id) FROM nightshift.runs
      WHERE job = %(job)s AND id < %(run_id)s AND status = 'succeeded'
  ), 0);
