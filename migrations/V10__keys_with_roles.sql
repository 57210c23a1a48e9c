-- Issue 16: more API keys per app, each with a role, and the web console's sessions.
--
-- `apps.api_key_sha256` stays what it was: the app's original key, always `platform`, so a
-- previous release (which reads only that column) keeps working on this schema, and
-- rotating it works as before. The keys here are added beside it.
CREATE TABLE app_keys (
    key_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id        text NOT NULL REFERENCES apps (app_id),
    name          text NOT NULL CHECK (name <> '' AND octet_length(name) <= 64),
    role          text NOT NULL CHECK (role IN ('support', 'platform')),
    key_sha256    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Updated at most once a minute per key and process, off the request path.
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT app_keys_key_sha256_key UNIQUE (key_sha256)
);
-- A name names one live key; a revoked key's name may be given again.
CREATE UNIQUE INDEX app_keys_live_name_idx ON app_keys (app_id, name) WHERE revoked_at IS NULL;

-- A key's revocation (or a change of its role) must reach every instance's authentication
-- cache within a second, as the app's own key changes do (V6). Only these columns: the
-- usage stamp is written every minute and proves nothing.
CREATE FUNCTION chatprefs_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('chatprefs_auth', '{}');
    ELSE
        PERFORM pg_notify('chatprefs_auth', json_build_object('app', OLD.app_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER app_keys_auth_changed AFTER UPDATE OF revoked_at, role, key_sha256, app_id OR DELETE
    ON app_keys FOR EACH ROW EXECUTE FUNCTION chatprefs_key_changed();
CREATE TRIGGER app_keys_auth_truncated AFTER TRUNCATE ON app_keys
    FOR EACH STATEMENT EXECUTE FUNCTION chatprefs_key_changed();

-- Console sign-ins: a random token in an HttpOnly cookie, stored as SHA-256, tied to the
-- key it was signed in with. The key is checked again on every request, so revoking it
-- (or replacing the app's original key) ends its sessions at once.
CREATE TABLE console_sessions (
    session_sha256  bytea PRIMARY KEY,
    app_id          text NOT NULL REFERENCES apps (app_id),
    key_sha256      bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
