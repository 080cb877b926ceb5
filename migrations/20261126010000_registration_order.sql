-- Registrations apply in the order they were signed (hmac) or received (static): a replay of
-- an older registration, still inside the guard's clock-skew window, never overwrites newer
-- data. Rows provisioned from a token (GET /users/me) start at 0, so any registration wins.
ALTER TABLE users ADD COLUMN signed_at bigint NOT NULL DEFAULT 0;

-- Cognito accepts attribute values of up to 2,048 characters; so does the api, so no user
-- Cognito confirmed can be refused for the length of their address.
ALTER TABLE users
    DROP CONSTRAINT users_email_check,
    ADD CONSTRAINT users_email_check
        CHECK (email IS NULL OR char_length(email) BETWEEN 3 AND 2048);
