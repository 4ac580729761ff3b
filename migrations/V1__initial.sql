-- The data model of the original OAuth service (13 tables, same names and
-- columns), plus what scopegate needs:
--  * access_tokens.token / refresh_tokens.refresh_token hold the SHA-256 (hex)
--    of the token, never the token itself;
--  * refresh tokens carry a family id (every token descended from one login),
--    a parent, and rotation state for reuse detection (RFC 9700 §4.14.2);
--  * every foreign key cascades on update and delete;
--  * every lookup column is indexed.
-- Timestamps (`expires`, `created`) are UNIX seconds, as in the original.

CREATE TABLE roles (
    role_id          SERIAL PRIMARY KEY,
    role_name        VARCHAR(255) NOT NULL UNIQUE,
    role_description TEXT
);

CREATE TABLE scopes (
    scope_id          SERIAL PRIMARY KEY,
    scope_name        VARCHAR(255) NOT NULL,
    scope_description TEXT,
    scope_value       VARCHAR(255) NOT NULL UNIQUE
);

CREATE TABLE accounts (
    account_id SERIAL PRIMARY KEY,
    first_name VARCHAR(255),
    last_name  VARCHAR(255),
    username   VARCHAR(255) NOT NULL UNIQUE,
    password   TEXT NOT NULL,
    is_active  BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE access_tokens (
    token_id BIGSERIAL PRIMARY KEY,
    token    CHAR(64) NOT NULL UNIQUE,      -- SHA-256 hex of the token
    active   BOOLEAN NOT NULL DEFAULT TRUE,
    expires  BIGINT NOT NULL,
    created  BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    refresh_token_id BIGSERIAL PRIMARY KEY,
    refresh_token    CHAR(64) NOT NULL UNIQUE,  -- SHA-256 hex of the token
    expires          BIGINT NOT NULL,
    -- additions
    created          BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT),
    active           BOOLEAN NOT NULL DEFAULT TRUE,   -- false: revoked
    family_id        BIGINT,                          -- refresh_token_id of the family's first token
    parent_id        BIGINT REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE SET NULL,
    rotated_at       BIGINT,                          -- set when exchanged for a successor
    successor_id     BIGINT REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE SET NULL,
    -- the successor pair, encrypted with a key derived from this token, kept
    -- only during refresh_reuse_grace_secs so a concurrent duplicate refresh
    -- receives the same pair (a leaked table cannot decrypt it)
    successor_sealed BYTEA
);

CREATE TABLE role_scopes (
    mapping_id SERIAL PRIMARY KEY,
    role_id    INTEGER NOT NULL REFERENCES roles (role_id) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (role_id, scope_id)
);

CREATE TABLE token_scopes (
    mapping_id SERIAL PRIMARY KEY,
    token_id   BIGINT NOT NULL REFERENCES access_tokens (token_id) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (token_id, scope_id)
);

CREATE TABLE refresh_token_scopes (
    mapping_id SERIAL PRIMARY KEY,
    token_id   BIGINT NOT NULL REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (token_id, scope_id)
);

CREATE TABLE refresh_token_tokens (
    mapping_id       SERIAL PRIMARY KEY,
    refresh_token_id BIGINT NOT NULL REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE CASCADE,
    access_token_id  BIGINT NOT NULL REFERENCES access_tokens (token_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (refresh_token_id, access_token_id)
);

CREATE TABLE account_scopes (
    mapping_id SERIAL PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    scope_id   INTEGER NOT NULL REFERENCES scopes (scope_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (account_id, scope_id)
);

CREATE TABLE account_roles (
    mapping_id SERIAL PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    role_id    INTEGER NOT NULL REFERENCES roles (role_id) ON UPDATE CASCADE ON DELETE CASCADE,
    UNIQUE (account_id, role_id)
);

CREATE TABLE account_tokens (
    mapping_id SERIAL PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    token_id   BIGINT NOT NULL UNIQUE REFERENCES access_tokens (token_id) ON UPDATE CASCADE ON DELETE CASCADE
);

CREATE TABLE account_refresh_tokens (
    mapping_id       SERIAL PRIMARY KEY,
    account_id       INTEGER NOT NULL REFERENCES accounts (account_id) ON UPDATE CASCADE ON DELETE CASCADE,
    refresh_token_id BIGINT NOT NULL UNIQUE REFERENCES refresh_tokens (refresh_token_id) ON UPDATE CASCADE ON DELETE CASCADE
);

-- Lookup indexes (the UNIQUE constraints above already index token hashes,
-- names, values and the leading column of each pair).
CREATE INDEX role_scopes_scope_idx ON role_scopes (scope_id);
CREATE INDEX token_scopes_scope_idx ON token_scopes (scope_id);
CREATE INDEX refresh_token_scopes_scope_idx ON refresh_token_scopes (scope_id);
CREATE INDEX refresh_token_tokens_access_idx ON refresh_token_tokens (access_token_id);
CREATE INDEX account_scopes_scope_idx ON account_scopes (scope_id);
CREATE INDEX account_roles_role_idx ON account_roles (role_id);
CREATE INDEX account_tokens_account_idx ON account_tokens (account_id);
CREATE INDEX account_refresh_tokens_account_idx ON account_refresh_tokens (account_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_parent_idx ON refresh_tokens (parent_id);
CREATE INDEX refresh_tokens_successor_idx ON refresh_tokens (successor_id);
CREATE INDEX access_tokens_expires_idx ON access_tokens (expires);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires);

INSERT INTO scopes (scope_name, scope_description, scope_value) VALUES
    ('scopegate admin', 'Full administration of scopegate (admin API, introspection)', 'scopegate:admin'),
    ('scopegate introspection', 'May call /oauth/introspect', 'scopegate:introspect');
