-- OAuth clients (docs/operations.md, "OAuth clients"; docs/http.md,
-- "Clients"). The seed's tables keep their names and columns; this adds:
--  * clients, their scopes (an upper bound on what any token issued through
--    the client may carry) and their redirect URIs (compared by string
--    equality, RFC 9700 §4.1.3);
--  * each client's service account (accounts row, its password column holds
--    a value no PHC string parser accepts, so it can never log in);
--  * authorization codes (RFC 6749 §4.1, RFC 7636): stored as SHA-256 hex,
--    single-use, bound to the client, redirect URI, code challenge, account,
--    scopes and the password hash the user logged in with;
--  * the client each token was issued through (nullable: tokens issued with
--    no client, as before).
-- Timestamps are UNIX seconds, as in the seed.

CREATE TABLE clients (
    client_pk   SERIAL PRIMARY KEY,
    client_id   VARCHAR(64) NOT NULL UNIQUE,   -- sgc_ + 16 random bytes, base64url
    client_name VARCHAR(64) NOT NULL,
    secret_hash CHAR(64),                      -- SHA-256 hex of the secret; NULL: a public client
    account_id  INTEGER NOT NULL UNIQUE REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    created     BIGINT NOT NULL
);
CREATE UNIQUE INDEX clients_name_idx ON clients (lower(client_name));

CREATE TABLE client_scopes (
    mapping_id SERIAL PRIMARY KEY,
    client_pk  INTEGER NOT NULL REFERENCES clients (client_pk) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (client_pk, scope_id)
);
CREATE INDEX client_scopes_scope_idx ON client_scopes (scope_id);

CREATE TABLE client_redirect_uris (
    mapping_id   SERIAL PRIMARY KEY,
    client_pk    INTEGER NOT NULL REFERENCES clients (client_pk) ON UPDATE CASCADE ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    UNIQUE (client_pk, redirect_uri)
);

CREATE TABLE authorization_codes (
    code_id          BIGSERIAL PRIMARY KEY,
    code             CHAR(64) NOT NULL UNIQUE,  -- SHA-256 hex of the code
    client_pk        INTEGER NOT NULL REFERENCES clients (client_pk) ON UPDATE CASCADE ON DELETE CASCADE,
    account_id       INTEGER NOT NULL REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    redirect_uri     TEXT NOT NULL,
    code_challenge   VARCHAR(128) NOT NULL,     -- S256 only
    password_check   CHAR(64) NOT NULL,         -- SHA-256 hex of the account's password hash at login
    expires          BIGINT NOT NULL,
    created          BIGINT NOT NULL,
    used_at          BIGINT,                    -- set on the first (and only) exchange
    refresh_token_id BIGINT REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX authorization_codes_expires_idx ON authorization_codes (expires);
CREATE INDEX authorization_codes_client_idx ON authorization_codes (client_pk);
CREATE INDEX authorization_codes_account_idx ON authorization_codes (account_id);

CREATE TABLE authorization_code_scopes (
    mapping_id SERIAL PRIMARY KEY,
    code_id    BIGINT NOT NULL REFERENCES authorization_codes (code_id) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (code_id, scope_id)
);

-- Deleting a client deletes what was issued through it (`client delete`
-- revokes it first, so every replica hears of it like any revocation).
ALTER TABLE access_tokens
    ADD COLUMN client_pk INTEGER REFERENCES clients (client_pk) ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE refresh_tokens
    ADD COLUMN client_pk INTEGER REFERENCES clients (client_pk) ON UPDATE CASCADE ON DELETE CASCADE;
CREATE INDEX access_tokens_client_idx ON access_tokens (client_pk);
CREATE INDEX refresh_tokens_client_idx ON refresh_tokens (client_pk);
