-- Accounts (a user name and a scrypt hash) and their sessions (one row per login).

-- migrate:up
CREATE TABLE IF NOT EXISTS accounts (
    id            uuid        PRIMARY KEY,
    user_name     text        NOT NULL UNIQUE CHECK (char_length(user_name) BETWEEN 1 AND 255),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sessions (
    id            uuid        PRIMARY KEY,
    account_id    uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    logged_out_at timestamptz
);

CREATE INDEX IF NOT EXISTS sessions_account_id_idx ON sessions (account_id);

-- migrate:down
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS accounts;
