-- What stood in the job's table for a refused row's key when it was refused: that row (as
-- jsonb), JSON null when no row had the key, SQL NULL when it could not be told (no key, a
-- key the table's types cannot hold, or refused before this migration). A replay compares it
-- with what stands there now: a key written since then by a later run is superseded (removed,
-- never written back), so a replay never puts back an older value.
ALTER TABLE nightshift.rejects ADD COLUMN held jsonb;
