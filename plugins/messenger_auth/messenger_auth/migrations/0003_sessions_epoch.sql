-- The sessions epoch (messenger_auth/epoch.py): one number, part of the seal of every cached session.
-- A logout that cannot evict its session from Redis ends the row and bumps it in one transaction, so
-- every process refuses what Redis still holds from before and asks the table.

-- migrate:up
CREATE TABLE IF NOT EXISTS sessions_epoch (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch    bigint  NOT NULL DEFAULT 0
);
INSERT INTO sessions_epoch (only_row, epoch) VALUES (true, 0) ON CONFLICT DO NOTHING;

-- migrate:down
DROP TABLE IF EXISTS sessions_epoch;
