-- One clock for token lifetimes (docs/security.md, "Clocks"): the
-- database's. Every `expires` and `created` a gateway writes, and every
-- "is it expired yet" it asks, is computed here from the server's clock,
-- never from the gateway's own wall clock, so replicas with skewed clocks
-- agree on every token and a gateway whose clock jumps cannot extend one.

-- UNIX seconds now, by the database's clock (the unit of the `expires`
-- and `created` columns): the start of the statement, not of the
-- transaction, so a statement that waited for a lock judges expiry as of
-- when it runs. STABLE: one value per statement, inlined.
CREATE FUNCTION scopegate_unix_now() RETURNS BIGINT
LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM statement_timestamp()))::BIGINT $$;
