-- Change markers: messages.changed is the chat's version (chats.version, migration 0002) at the message's
-- last edit or delete, 0 for a message never changed.  Every edit and delete moves the chat's version on
-- while it holds the chat's row, so the markers of a chat's messages follow the commit order of its changes
-- and no two are equal.  A reader that knows the chat's changes up to some version (a stream that lost its
-- LISTEN connection) reads the ones after it through the index, which holds changed messages only: never
-- the chat's messages.

-- migrate:up
ALTER TABLE messages ADD COLUMN IF NOT EXISTS changed bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS messages_changed_idx ON messages (chat_id, changed) WHERE changed > 0;

-- migrate:down
DROP INDEX IF EXISTS messages_changed_idx;
ALTER TABLE messages DROP COLUMN IF EXISTS changed;
