-- Indexes for what the issuer's background work reads.
--
-- The grace-window sweeper erases sealed successor pairs once their window
-- has passed:
--   UPDATE refresh_tokens SET successor_sealed = NULL
--    WHERE successor_sealed IS NOT NULL AND rotated_at < $1
-- Only the few rows rotated within the last window still hold a sealed pair,
-- so a partial index over just those keeps every sweep (every 1 to 60 s) an
-- index scan of a handful of rows instead of a scan of the whole table.
CREATE INDEX refresh_tokens_sealed_idx ON refresh_tokens (rotated_at)
    WHERE successor_sealed IS NOT NULL;
