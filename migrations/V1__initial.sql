-- chatprefs schema: directory (apps, clients, tokens, rooms), the append-only event log,
-- and the read model projected from it.

CREATE TABLE apps (
    app_id          text PRIMARY KEY,
    client_key      text NOT NULL,
    api_key_sha256  bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT apps_client_key_key UNIQUE (client_key),
    CONSTRAINT apps_api_key_sha256_key UNIQUE (api_key_sha256)
);

-- IMKIT calls an app's users "clients".
CREATE TABLE clients (
    app_id                text NOT NULL REFERENCES apps,
    client_id             text NOT NULL,
    nickname              text,
    email                 text,
    avatar_url            text,
    last_login_ms         bigint,
    notification_enabled  boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, client_id)
);

-- Only the SHA-256 of a token is kept: a leaked table does not leak sessions.
CREATE TABLE tokens (
    token_sha256  bytea PRIMARY KEY,
    app_id        text NOT NULL,
    client_id     text NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    FOREIGN KEY (app_id, client_id) REFERENCES clients
);
CREATE INDEX tokens_client_idx ON tokens (app_id, client_id);

CREATE TABLE rooms (
    app_id      text NOT NULL REFERENCES apps,
    room_id     text NOT NULL,
    name        text,
    room_type   text,
    members     text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, room_id)
);

-- The source of truth. Every change of a preference is one row; rows are never changed.
CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL,
    app_id          text NOT NULL,
    stream_type     text NOT NULL,
    stream_id       text NOT NULL,
    stream_version  integer NOT NULL CHECK (stream_version > 0),
    event_type      text NOT NULL,
    schema_version  smallint NOT NULL DEFAULT 1,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- A stale writer's append fails here (SQLSTATE 23505); the service maps this constraint
    -- name to a concurrency conflict and retries the command.
    CONSTRAINT events_stream_version_key UNIQUE (app_id, stream_type, stream_id, stream_version)
);
-- Global-order readers (rebuild, audit feeds) read by (transaction_id, position).
CREATE INDEX events_transaction_idx ON events (transaction_id, position);

CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Read model: who muted what, projected in the same transaction as each append.
CREATE TABLE room_mutes (
    app_id     text NOT NULL,
    client_id  text NOT NULL,
    room_id    text NOT NULL,
    muted_at   timestamptz NOT NULL,
    position   bigint NOT NULL,
    PRIMARY KEY (app_id, client_id, room_id)
);
-- "Who muted this room": the push dispatcher's question.
CREATE INDEX room_mutes_room_idx ON room_mutes (app_id, room_id);

-- The stream version the read model reflects, one row per stream. Writers lock this row
-- to serialise commands on one user, so concurrent requests queue instead of failing.
CREATE TABLE stream_versions (
    app_id       text NOT NULL,
    stream_type  text NOT NULL,
    stream_id    text NOT NULL,
    version      integer NOT NULL,
    PRIMARY KEY (app_id, stream_type, stream_id)
);

-- Where each asynchronous projection (rebuild, future feeds) has read the log up to.
CREATE TABLE projection_checkpoints (
    projection   text PRIMARY KEY,
    position     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
