-- Rows a table refused are kept aside (quarantined) instead of failing the run: the batch's
-- other rows commit with their state, and the refused ones wait here to be replayed once
-- their cause is fixed (`python -m worker rejects JOB --replay`).
CREATE TABLE nightshift.rejects (
    id           bigserial PRIMARY KEY,
    job          text        NOT NULL,
    run_id       bigint REFERENCES nightshift.runs (id) ON DELETE SET NULL,
    key          json,                 -- the row's key values, when it had them
    "row"        json        NOT NULL, -- json, not jsonb: it keeps what jsonb refuses (\u0000)
    error        text        NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejects_job ON nightshift.rejects (job, id);

ALTER TABLE nightshift.runs ADD COLUMN rejected bigint NOT NULL DEFAULT 0;

-- A fire time that found its job busy past its misfire grace is recorded as missed, with why.
ALTER TABLE nightshift.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE nightshift.runs ADD CONSTRAINT runs_status_check CHECK (
    status IN ('running', 'succeeded', 'failed', 'interrupted', 'abandoned', 'missed'));
