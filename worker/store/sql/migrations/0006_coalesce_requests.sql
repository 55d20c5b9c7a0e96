-- A request identical to one still pending joins it instead of queueing another run: a
-- double-clicked "Run now" (30 identical INSERTs) gives one run, not 30 back to back.
-- Identical: same job, params, full_refresh, since and until. Pending: not claimed yet; once a
-- run has claimed it (started), a new request queues again, as that run may miss newer data.
-- A joined INSERT inserts nothing (`INSERT 0 0`, RETURNING gives no row, no NOTIFY) and says
-- which request it joined in a NOTICE (psql prints it) and in the transaction-local setting
-- nightshift.joined_request (read by `python -m worker trigger`).

-- Requests queued twice before this migration join the oldest of their kind, as they would
-- have; the unique index below needs them folded.
DELETE FROM nightshift.triggers AS later
USING nightshift.triggers AS earlier
WHERE later.claimed_at IS NULL AND earlier.claimed_at IS NULL AND earlier.id < later.id
  AND later.job = earlier.job AND later.params = earlier.params
  AND later.full_refresh = earlier.full_refresh
  AND later.since IS NOT DISTINCT FROM earlier.since
  AND later.until IS NOT DISTINCT FROM earlier.until;

CREATE FUNCTION nightshift.join_pending_request() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pending record;
BEGIN
    -- One request for a job at a time, until its transaction ends: a concurrent identical
    -- INSERT waits here, then (READ COMMITTED: each statement below takes a new snapshot)
    -- sees the one that committed and joins it. The one-key form of Nightshift's lock
    -- namespace (0x4E53), so it never meets a run's job lock (two keys), held for a whole run.
    PERFORM pg_advisory_xact_lock((20051::bigint << 32) | (hashtext(NEW.job)::bigint & 4294967295));
    SELECT id, requested_at INTO pending
    FROM nightshift.triggers
    WHERE job = NEW.job AND claimed_at IS NULL
      AND params = NEW.params AND full_refresh = NEW.full_refresh
      AND since IS NOT DISTINCT FROM NEW.since AND until IS NOT DISTINCT FROM NEW.until
    ORDER BY id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    PERFORM set_config('nightshift.joined_request', pending.id::text, true);
    RAISE NOTICE 'nightshift: joined pending request % for job % (queued %)', pending.id,
        NEW.job, to_char(pending.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"');
    RETURN NULL;
END $$;
-- After check_trigger (BEFORE triggers fire in name order): an unknown job is still refused.
CREATE TRIGGER join_pending_request BEFORE INSERT ON nightshift.triggers
    FOR EACH ROW EXECUTE FUNCTION nightshift.join_pending_request();

-- The backstop: a transaction that cannot see a concurrent identical request (REPEATABLE READ
-- takes one snapshot for the whole transaction) fails with unique_violation instead of
-- queueing it twice. params by digest: an index entry has a size limit, a request has not.
CREATE UNIQUE INDEX triggers_one_pending_per_request ON nightshift.triggers (
    job, md5(params::text), full_refresh,
    coalesce(since, '-infinity'::date), coalesce(until, 'infinity'::date)
) WHERE claimed_at IS NULL;
