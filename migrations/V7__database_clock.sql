-- One clock for token lifetimes (docs/security.md, "Clocks"): the
-- database's. Every `expires` and `created` a gateway writes, and every
-- "is it expired yet" it asks, is computed here from the server's `now()`
-- (the start of the current transaction), never from the gateway's own
-- wall clock, so replicas with skewed clocks agree on every token and a
-- gateway whose clock jumps cannot extend one.

-- UNIX seconds now, by the database's clock (the unit of the `expires`
-- and `created` columns). STABLE: one value per statement, inlined.
CREATE FUNCTION scopegate_unix_now() RETURNS BIGINT
LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM now()))::BIGINT $$;
