-- Revocations pushed to every replica (docs/operations.md, "Token cache
-- consistency"): every change that can make a cached access token invalid
-- or stale sends a NOTIFY on `scopegate_revocations` in the transaction
-- that makes it, so every listening gateway hears it when, and only if, it
-- commits, whoever wrote it (a gateway, the CLI, psql).
--
-- Payloads: 't:<sha256 hex>,<sha256 hex>,...' (at most 100 tokens, well
-- under NOTIFY's 8000-byte limit) and 'a:<account_id>'.

-- Send the hashes in `hashes` (a query's rows), 100 per notification.
CREATE FUNCTION scopegate_notify_tokens(hashes TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    i INTEGER := 1;
    n INTEGER := COALESCE(array_length(hashes, 1), 0);
BEGIN
    WHILE i <= n LOOP
        PERFORM pg_notify('scopegate_revocations',
                          't:' || array_to_string(hashes[i:i + 99], ','));
        i := i + 100;
    END LOOP;
END $$;

-- An access token deactivated, or its expiry brought forward.
CREATE FUNCTION scopegate_access_tokens_updated() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM scopegate_notify_tokens(ARRAY(
        SELECT DISTINCT o.token
          FROM old_rows o JOIN new_rows n ON n.token_id = o.token_id
         WHERE o.active
           AND o.expires > extract(epoch FROM now())
           AND (NOT n.active OR n.expires < o.expires OR n.token <> o.token)));
    RETURN NULL;
END $$;

CREATE TRIGGER scopegate_access_tokens_updated
    AFTER UPDATE ON access_tokens
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION scopegate_access_tokens_updated();

-- A live access token deleted (its account or client deleted, or by hand;
-- the cleanup sweep deletes only expired ones, which need no notice).
CREATE FUNCTION scopegate_access_tokens_deleted() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM scopegate_notify_tokens(ARRAY(
        SELECT DISTINCT o.token FROM old_rows o
         WHERE o.active AND o.expires > extract(epoch FROM now())));
    RETURN NULL;
END $$;

CREATE TRIGGER scopegate_access_tokens_deleted
    AFTER DELETE ON access_tokens
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION scopegate_access_tokens_deleted();

-- A scope taken from live access tokens (the cached scopes are stale).
CREATE FUNCTION scopegate_token_scopes_deleted() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM scopegate_notify_tokens(ARRAY(
        SELECT DISTINCT t.token
          FROM old_rows o JOIN access_tokens t ON t.token_id = o.token_id
         WHERE t.active AND t.expires > extract(epoch FROM now())));
    RETURN NULL;
END $$;

CREATE TRIGGER scopegate_token_scopes_deleted
    AFTER DELETE ON token_scopes
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION scopegate_token_scopes_deleted();

-- An account deactivated, re-activated, renamed, its password changed, or
-- deleted: every cached token of it is re-checked.
CREATE FUNCTION scopegate_account_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scopegate_revocations', 'a:' || OLD.account_id);
    RETURN NULL;
END $$;

CREATE TRIGGER scopegate_account_updated
    AFTER UPDATE ON accounts
    FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
          OR OLD.password IS DISTINCT FROM NEW.password
          OR OLD.username IS DISTINCT FROM NEW.username)
    EXECUTE FUNCTION scopegate_account_changed();

CREATE TRIGGER scopegate_account_deleted
    AFTER DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION scopegate_account_changed();
