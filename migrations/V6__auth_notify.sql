-- Every instance caches successful authentications; this tells all of them, within the
-- transaction that makes it, that what a credential proves may have changed: a token
-- revoked or expired by hand, a user's profile, an app's keys or settings. Inserts need no
-- notice (a cache holds only what was found). `app` alone concerns the whole app; an empty
-- object (TRUNCATE) concerns everything.
CREATE FUNCTION chatprefs_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('chatprefs_auth', '{}');
    ELSIF TG_TABLE_NAME = 'apps' THEN
        PERFORM pg_notify('chatprefs_auth', json_build_object('app', OLD.app_id)::text);
    ELSE
        PERFORM pg_notify('chatprefs_auth',
            json_build_object('app', OLD.app_id, 'client', OLD.client_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER apps_auth_changed AFTER UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE FUNCTION chatprefs_auth_changed();
CREATE TRIGGER clients_auth_changed AFTER UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION chatprefs_auth_changed();
CREATE TRIGGER tokens_auth_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION chatprefs_auth_changed();
CREATE TRIGGER apps_auth_truncated AFTER TRUNCATE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION chatprefs_auth_changed();
CREATE TRIGGER clients_auth_truncated AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION chatprefs_auth_changed();
CREATE TRIGGER tokens_auth_truncated AFTER TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION chatprefs_auth_changed();
