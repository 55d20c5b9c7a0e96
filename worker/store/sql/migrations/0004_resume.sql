-- A scheduled or queued run that a shutdown or a crash cut short is resumed by the next worker
-- start (trigger 'resume'); each such run is resumed once.
ALTER TABLE nightshift.runs ADD COLUMN resumes bigint REFERENCES nightshift.runs (id);
ALTER TABLE nightshift.runs ADD COLUMN resumed_by bigint REFERENCES nightshift.runs (id);
