-- Conversations: owners, private chats and invites, leaving, read markers, edit and delete.
--
-- chats.version moves on with every change that can make something cached about the chat wrong
-- (an edit, a delete, a member leaving or removed); every cached page and membership fact of the
-- chat is keyed by it (messenger_chats/store.py).  chats.deleted_total counts its deleted messages.
--
-- chat_accounts: one row per (account, chat) while the account has a member there (members > 0),
-- with the account's read marker: read_seq (the position read up to) and deleted_upto (how many
-- deleted messages lie at or before read_seq).  The unread count is then arithmetic on two rows:
--     unread = (chats.last_seq - read_seq) - (chats.deleted_total - deleted_upto)
-- no message is counted.  Every writer of a chat_accounts row first locks its chat's row, so the
-- counters stay consistent with each other.

-- migrate:up
ALTER TABLE chats ADD COLUMN IF NOT EXISTS owner_id uuid NULL;
ALTER TABLE chats ADD COLUMN IF NOT EXISTS private boolean NOT NULL DEFAULT false;
ALTER TABLE chats ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN IF NOT EXISTS deleted_total bigint NOT NULL DEFAULT 0;

ALTER TABLE chat_members ADD COLUMN IF NOT EXISTS left_at timestamptz NULL;

ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at timestamptz NULL;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at timestamptz NULL;
-- only deleted messages are in it: counting the deleted ones in a range of a chat (a read marker
-- that moves forward) reads deletions, never the chat's messages
CREATE INDEX IF NOT EXISTS messages_deleted_idx ON messages (chat_id, seq) WHERE deleted_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS chat_accounts (
    account_id   uuid        NOT NULL,
    chat_id      uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    members      integer     NOT NULL CHECK (members > 0),
    joined_at    timestamptz NOT NULL DEFAULT now(),
    read_seq     bigint      NOT NULL,
    deleted_upto bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, chat_id)
);
CREATE INDEX IF NOT EXISTS chat_accounts_chat_idx ON chat_accounts (chat_id);

-- accounts that joined before this migration: their marker starts at the chat's end
INSERT INTO chat_accounts (account_id, chat_id, members, joined_at, read_seq)
SELECT m.account_id, m.chat_id, count(*), min(m.created_at), c.last_seq
FROM chat_members AS m JOIN chats AS c ON c.id = m.chat_id
WHERE m.account_id IS NOT NULL AND m.left_at IS NULL
GROUP BY m.account_id, m.chat_id, c.last_seq
ON CONFLICT DO NOTHING;

-- invites: only a hash of the token is stored
CREATE TABLE IF NOT EXISTS chat_invites (
    token_hash bytea       PRIMARY KEY,
    chat_id    uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_by uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_invites_chat_idx ON chat_invites (chat_id);

-- migrate:down
DROP TABLE IF EXISTS chat_invites;
DROP TABLE IF EXISTS chat_accounts;
DROP INDEX IF EXISTS messages_deleted_idx;
ALTER TABLE messages DROP COLUMN IF EXISTS deleted_at;
ALTER TABLE messages DROP COLUMN IF EXISTS edited_at;
ALTER TABLE chat_members DROP COLUMN IF EXISTS left_at;
ALTER TABLE chats DROP COLUMN IF EXISTS deleted_total;
ALTER TABLE chats DROP COLUMN IF EXISTS version;
ALTER TABLE chats DROP COLUMN IF EXISTS private;
ALTER TABLE chats DROP COLUMN IF EXISTS owner_id;
