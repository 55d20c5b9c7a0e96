-- A run is recorded under a token its process chose, so that replaying the INSERT after a
-- COMMIT whose outcome was lost (the connection died) finds the same run instead of a second.
ALTER TABLE nightshift.runs ADD COLUMN token uuid UNIQUE;
-- How many times the run had to reconnect (failover, rotation, restarts, dead networks).
ALTER TABLE nightshift.runs ADD COLUMN reconnects integer NOT NULL DEFAULT 0;
