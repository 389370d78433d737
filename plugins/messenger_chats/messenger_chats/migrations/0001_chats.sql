-- Chats, their members and their messages.
-- messages.seq is the message's position in its chat, handed out from chats.last_seq inside the
-- inserting statement, so positions follow commit order (see messenger_chats/store.py).
-- The messages columns are a public contract: the search plugin reads them (messenger_chats/api.py).

-- migrate:up
CREATE TABLE IF NOT EXISTS chats (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seq   bigint      NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS chat_members (
    id         uuid        PRIMARY KEY,
    chat_id    uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_name  text        NOT NULL,
    account_id uuid        NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- "which chats has this account joined" and "has account A joined chat C"
CREATE INDEX IF NOT EXISTS chat_members_account_chat_idx
    ON chat_members (account_id, chat_id) WHERE account_id IS NOT NULL;
-- the foreign key's lookups (cascade) and "members of a chat"
CREATE INDEX IF NOT EXISTS chat_members_chat_idx ON chat_members (chat_id);

CREATE TABLE IF NOT EXISTS messages (
    id         uuid        PRIMARY KEY,
    chat_id    uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    member_id  uuid        NOT NULL REFERENCES chat_members (id),
    text       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- the keyset paging index: WHERE chat_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
    CONSTRAINT messages_chat_seq_key UNIQUE (chat_id, seq)
);

-- No index on messages (member_id): the API never deletes members or chats, and every index
-- slows each insert down.  Add one before bulk-deleting chats by hand.

-- migrate:down
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS chat_members;
DROP TABLE IF EXISTS chats;
