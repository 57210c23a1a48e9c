-- Client sign-in (`POST /auths/sign/v2`) hands a token for any user id to whoever holds
-- the app's public client key, so it is off unless the app's operator turns it on.
ALTER TABLE apps ADD COLUMN client_sign_in boolean NOT NULL DEFAULT false;

-- Which door a token came through, so support can tell client sign-ins apart.
ALTER TABLE tokens ADD COLUMN issued_by text NOT NULL DEFAULT 'platform'
    CONSTRAINT tokens_issued_by_check CHECK (issued_by IN ('platform', 'client_sign_in'));
