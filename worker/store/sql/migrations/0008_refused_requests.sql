-- A request no run can serve (a window outside the dates a job can take, parameters that are
-- not a JSON object of strings, a job no longer declared) is settled once: the worker records
-- it as a run with the status `refused` (its error the one-line reason), marks the request
-- claimed with that reason in `refused`, sends one alert, and the job's next requests run.
ALTER TABLE nightshift.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE nightshift.runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'running', 'succeeded', 'failed', 'interrupted', 'abandoned', 'missed', 'refused'));

-- Why the worker refused the request (NULL: pending, or served by the run `run_id` names).
ALTER TABLE nightshift.triggers ADD COLUMN refused text;

-- A date as the worker reads it, whatever the session's DateStyle: YYYY-MM-DD (more digits
-- after year 9999), " BC" after it before year 1, or infinity / -infinity. Read so, no stored
-- date can make the driver fail. (Not to_char: it goes through timestamp, whose range ends
-- long before date's, and fails on the dates this is for.)
CREATE FUNCTION nightshift.date_text(d date) RETURNS text LANGUAGE sql STABLE
    SET datestyle = 'ISO, YMD' AS $$
    SELECT d::text
$$;

-- The checks of 0003, and now the window too: finite dates a run can take (those a Python
-- date holds), since no later than until. Each refusal names the value and the range.
CREATE OR REPLACE FUNCTION nightshift.check_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
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
        -- Says which parameter, never its value (it may be a credential: the message reaches
        -- the client and the server's log).
        RAISE EXCEPTION 'params must be a JSON object of strings: %', coalesce((
            SELECT format('%L is a JSON %s', key, jsonb_typeof(value))
            FROM jsonb_each(CASE jsonb_typeof(NEW.params) WHEN 'object' THEN NEW.params END)
            WHERE jsonb_typeof(value) <> 'string' ORDER BY key LIMIT 1
        ), format('got a JSON %s', jsonb_typeof(NEW.params)))
            USING ERRCODE = 'check_violation';
    END IF;
    -- The run history keeps these names beside a request's own parameters.
    IF NEW.params ?| ARRAY['full_refresh', 'since', 'until'] THEN
        RAISE EXCEPTION 'params may not be named full_refresh, since or until: use the columns'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.since IS NOT NULL AND NOT NEW.since BETWEEN '0001-01-01' AND '9999-12-31' THEN
        RAISE EXCEPTION 'since % is not a date (0001-01-01 to 9999-12-31)',
            quote_literal(nightshift.date_text(NEW.since))
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.until IS NOT NULL AND NOT NEW.until BETWEEN '0001-01-01' AND '9999-12-31' THEN
        RAISE EXCEPTION 'until % is not a date (0001-01-01 to 9999-12-31)',
            quote_literal(nightshift.date_text(NEW.until))
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.since > NEW.until THEN
        RAISE EXCEPTION 'since % is after until %', quote_literal(nightshift.date_text(NEW.since)),
            quote_literal(nightshift.date_text(NEW.until))
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
