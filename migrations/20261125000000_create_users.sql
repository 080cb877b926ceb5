-- One row per confirmed Cognito user. `cognito_sub` is the identity: registration is
-- idempotent on it, because Cognito retries the PostConfirmation trigger.
CREATE TABLE users (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    cognito_sub    uuid        NOT NULL UNIQUE,
    email          text        CHECK (email IS NULL OR char_length(email) BETWEEN 3 AND 254),
    email_verified boolean     NOT NULL DEFAULT false,
    username       text        NOT NULL CHECK (char_length(username) BETWEEN 1 AND 128),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
