-- Indexes of the sessions table's cleanup (messenger_auth/sessions.py, clean): each of its two DELETEs
-- finds its batch by an index range scan that stops after the batch's rows, instead of a sequential
-- scan that passes every row, dead ones included, for each batch.  Built without CONCURRENTLY (the
-- migration is one transaction): on a large table, logins wait for the build once.

-- migrate:up
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_logged_out_at_idx ON sessions (logged_out_at) WHERE logged_out_at IS NOT NULL;

-- migrate:down
DROP INDEX IF EXISTS sessions_logged_out_at_idx;
DROP INDEX IF EXISTS sessions_expires_at_idx;
