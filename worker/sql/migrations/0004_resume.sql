-- A scheduled or queued run that a shutdown or a crash cut short is resumed by the next worker
-- start (trigger 'resume'); each such run is resumed once.
ALTER TABLE nightshift.runs ADD COLUMN resumes bigint REFERENCES nightshift.runs (id);
ALTER TABLE nightshift.runs ADD COLUMN resumed_by bigint REFERENCES nightshift.runs (id);

-- A request's own parameters may not use the names the run history keeps beside them.
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
        RAISE EXCEPTION 'params must be a JSON object of strings, got %', NEW.params
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.params ?| ARRAY['full_refresh', 'since', 'until'] THEN
        RAISE EXCEPTION 'params may not be named full_refresh, since or until: use the columns'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
