-- Scheduling that never double-runs: a scheduled run records the fire time it serves, and a
-- fire time is served once.
ALTER TABLE nightshift.runs ADD COLUMN scheduled_for timestamptz;
CREATE UNIQUE INDEX runs_one_per_fire_time ON nightshift.runs (job, scheduled_for)
    WHERE scheduled_for IS NOT NULL;

-- The jobs the deployed code declares (kept by `migrate`), so a trigger can be checked in SQL.
CREATE TABLE nightshift.jobs (
    name        text PRIMARY KEY,
    schedule    text,
    timezone    text NOT NULL DEFAULT 'UTC',
    retired     boolean NOT NULL DEFAULT false,   -- no longer in the code
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Requests to run a job now, from `python -m worker trigger` or a plain INSERT:
--   INSERT INTO nightshift.triggers (job) VALUES ('earthquakes');
--   INSERT INTO nightshift.triggers (job, full_refresh, since, until, params)
--   VALUES ('earthquakes', true, '2024-01-01', '2024-02-01', '{"region": "ca"}');
-- A running worker claims each request once and links it to the run it started.
CREATE TABLE nightshift.triggers (
    id            bigserial PRIMARY KEY,
    job           text        NOT NULL REFERENCES nightshift.jobs (name),
    params        jsonb       NOT NULL DEFAULT '{}',
    full_refresh  boolean     NOT NULL DEFAULT false,
    since         date,
    until         date,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    requested_by  text        NOT NULL DEFAULT current_user,
    claimed_at    timestamptz,
    claimed_by    text,
    run_id        bigint REFERENCES nightshift.runs (id) ON DELETE SET NULL,
    CHECK (since IS NULL OR until IS NULL OR since <= until)
);
CREATE INDEX triggers_pending ON nightshift.triggers (job, id) WHERE claimed_at IS NULL;

CREATE FUNCTION nightshift.check_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    known text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM nightshift.jobs WHERE name = NEW.job AND NOT retired) THEN
        SELECT string_agg(name, ', ' ORDER BY name) INTO known
        FROM nightshift.jobs WHERE NOT retired;
        RAISE EXCEPTION 'unknown job %; known jobs: %', quote_literal(NEW.job), coalesce(known, 'none')
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF jsonb_typeof(NEW.params) <> 'object' OR EXISTS (
        SELECT 1 FROM jsonb_each(NEW.params) WHERE jsonb_typeof(value) <> 'string'
    ) THEN
        RAISE EXCEPTION 'params must be a JSON object of strings, got %', NEW.params
            USING ERRCODE = 'check_violation';
    END IF;
    -- The run history keeps these names beside a request's own parameters.
    IF NEW.params ?| ARRAY['full_refresh', 'since', 'until'] THEN
        RAISE EXCEPTION 'params may not be named full_refresh, since or until: use the columns'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER check_trigger BEFORE INSERT ON nightshift.triggers
    FOR EACH ROW EXECUTE FUNCTION nightshift.check_trigger();

-- Wake the workers (LISTEN nightshift_triggers); they also poll, as a NOTIFY can be missed.
CREATE FUNCTION nightshift.notify_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nightshift_triggers', NEW.job);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_trigger AFTER INSERT ON nightshift.triggers
    FOR EACH ROW EXECUTE FUNCTION nightshift.notify_trigger();
