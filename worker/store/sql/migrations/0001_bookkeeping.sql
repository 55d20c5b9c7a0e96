-- Run history and job state, in their own schema so they never collide with a job's tables.
CREATE TABLE nightshift.runs (
    id           bigserial PRIMARY KEY,
    job          text        NOT NULL,
    trigger      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'abandoned')),
    rows         bigint      NOT NULL DEFAULT 0,   -- rows the job yielded and the loader wrote
    changed      bigint      NOT NULL DEFAULT 0,   -- of those, rows inserted or actually changed
    batches      integer     NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    error        text,
    dyno         text,
    pid          integer,
    params       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_job_started ON nightshift.runs (job, started_at DESC);
CREATE INDEX runs_running ON nightshift.runs (job) WHERE status = 'running';

-- One row per job: what the last committed batch reached. Written in the batch's transaction.
CREATE TABLE nightshift.job_state (
    job         text PRIMARY KEY,
    state       jsonb       NOT NULL DEFAULT '{}',
    run_id      bigint REFERENCES nightshift.runs (id) ON DELETE SET NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
