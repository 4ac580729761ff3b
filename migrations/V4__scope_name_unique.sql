-- A scope's display name is unique, like its value: the admin API answers a
-- duplicate name with 409, and a name names one scope in every listing.
-- Existing duplicates (the CLI used to accept them) keep their oldest holder
-- unchanged; the others get their id appended, so the constraint can be
-- added on any existing database.

UPDATE scopes s
   SET scope_name = left(s.scope_name, 240) || ' (' || s.scope_id || ')'
 WHERE EXISTS (SELECT 1 FROM scopes o
                WHERE o.scope_name = s.scope_name AND o.scope_id < s.scope_id);

ALTER TABLE scopes ADD CONSTRAINT scopes_scope_name_key UNIQUE (scope_name);
