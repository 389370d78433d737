"""The public interface of ``messenger_chats``: the only module other plugins may import.

Membership queries for plugins that must respect who may see which chat (search does):

* :func:`chats_of_account` -- the chats in which an account has a present member;
* :func:`member_scope` -- the chats a chat member id may see;
* :func:`account_in_chat` -- whether an account owns a member of a chat;
* :func:`chat_summary` -- an account's summary of one chat, exactly as ``GET /v1/chats`` lists it.

Reading messages as a stream does (the events plugin):

* :func:`last_seqs` -- the newest position of chats; :func:`heads` -- that and the chats' change markers;
  :func:`messages_after` -- messages after a position, each with its own; :func:`message` -- one message;
* :func:`changes_after` -- the messages up to a position edited or deleted after a change marker (what a
  stream missed while its ``LISTEN`` connection was down);
* :func:`iterator` / :func:`position` -- a position to the iterator clients page with, and back;
* :data:`CHANNEL` and :func:`parse_event` -- the chats' events over PostgreSQL NOTIFY (see
  :mod:`messenger_chats.events` for their payloads), for ``runtime.pubsub.subscribe``.

and the error codes it shares with them (``chat_not_found``, ``user_not_found``, ``bad_cursor``),
so that each is defined once.

The ``messages`` table is part of this contract too; other plugins may read these columns (and
add their own indexes on them, after this plugin's migrations, ``Migrations(..., after=("messenger_chats",))``)::

    messages(id uuid PRIMARY KEY,
             chat_id uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
             seq bigint NOT NULL,            -- position in the chat, 1, 2, 3... in commit order
             member_id uuid NOT NULL REFERENCES chat_members(id),
             text text NOT NULL,             -- '' once deleted
             created_at timestamptz NOT NULL DEFAULT now(),
             edited_at timestamptz NULL,     -- set by each edit of the text
             deleted_at timestamptz NULL,    -- set by its deletion: the row stays, it is shown nowhere
             changed bigint NOT NULL,        -- the chat's change marker at its last edit or delete, 0: none
             UNIQUE (chat_id, seq))

Rows are inserted by posts; an edit updates ``text``, ``edited_at`` and ``changed``, a delete sets
``deleted_at`` and ``changed`` (and empties ``text``).  A chat's change markers grow in the commit order of
its edits and deletes, and no two messages of a chat share one.  A reader must leave out rows with
``deleted_at IS NOT NULL``.  The other tables and every other module of this package (``events`` aside, see
below) are internal.

Chat events: every write a stream must learn of sends one NOTIFY on the channel ``messenger_chats``
inside its transaction (payloads in ``messenger_chats.events``).
"""

from __future__ import annotations

import uuid

from typing import Any

from messenger_core import Database

from . import conversations, cursor
from .errors import bad_cursor, chat_not_found, user_not_found
from .conversations import CHANGES_AFTER
from .events import CHANNEL
from .events import parse as parse_event
from .store import message_json

__all__ = ["CHANNEL", "account_in_chat", "bad_cursor", "changes_after", "chat_not_found", "chat_summary",
           "chats_of_account", "heads", "iterator", "last_seqs", "member_scope", "message", "messages_after",
           "parse_event", "position", "user_not_found"]

_ACCOUNT_IN_CHAT = """
SELECT 1 AS found FROM chat_members WHERE account_id = %s AND chat_id = %s AND left_at IS NULL LIMIT 1
"""
_LAST_SEQS = "SELECT id, last_seq FROM chats WHERE id = ANY(%s)"
_HEADS = "SELECT id, last_seq, version FROM chats WHERE id = ANY(%s)"
_AFTER = """
SELECT id, member_id, text, created_at, edited_at, seq FROM messages
WHERE chat_id = %s AND seq > %s AND deleted_at IS NULL ORDER BY seq LIMIT %s
"""
_MESSAGE = """
SELECT id, member_id, text, created_at, edited_at, seq FROM messages
WHERE chat_id = %s AND id = %s AND deleted_at IS NULL
"""

_CHATS_OF_ACCOUNT = "SELECT chat_id FROM chat_accounts WHERE account_id = %s ORDER BY chat_id"
_MEMBER = "SELECT chat_id, account_id FROM chat_members WHERE id = %s AND left_at IS NULL"


def _as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


async def chats_of_account(db: Database, account_id: str | uuid.UUID) -> list[uuid.UUID]:
    """Ids of the chats in which ``account_id`` has at least one present member (sorted; maybe empty).

    ``account_id`` is a UUID or its string form (32 hex characters); a string that is not a UUID
    raises ``ValueError``.  Database outages raise ``DatabaseUnavailable``.
    """
    rows = await db.fetchall(_CHATS_OF_ACCOUNT, (_as_uuid(account_id),))
    return [row["chat_id"] for row in rows]


async def member_scope(db: Database, member_id: uuid.UUID) -> list[uuid.UUID] | None:
    """The chats a member may see, or None when no present member (one that neither left nor was removed)
    has this id.

    A member linked to an account (auth on when it joined) sees every chat of that account; a
    member without an account (auth off) sees only its own chat.
    """
    row = await db.fetchone(_MEMBER, (_as_uuid(member_id),))
    if row is None:
        return None
    if row["account_id"] is not None:
        return await chats_of_account(db, row["account_id"])
    return [row["chat_id"]]


async def account_in_chat(db: Database, chat_id: uuid.UUID, account_id: str | uuid.UUID) -> bool:
    """Whether the account owns at least one member of the chat (read from PostgreSQL)."""
    return await db.fetchone(_ACCOUNT_IN_CHAT, (_as_uuid(account_id), chat_id)) is not None


async def chat_summary(db: Database, account_id: str | uuid.UUID, chat_id: uuid.UUID) -> bytes | None:
    """The account's summary of the chat as JSON, exactly as ``GET /v1/chats`` lists it (the same query), or
    None when the account has no present member there."""
    found = await conversations.summaries(db, _as_uuid(account_id), chat_id)
    return found[0] if found else None


async def last_seqs(db: Database, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The position of the newest message of each chat that exists (0: none yet); unknown ids are left out."""
    rows = await db.fetchall(_LAST_SEQS, (chat_ids,))
    return {row["id"]: row["last_seq"] for row in rows}


async def heads(db: Database, chat_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """Of each chat that exists, ``(last position, change marker)`` read together: the marker is the chat's
    version, which every edit and delete moves on (unknown ids are left out)."""
    rows = await db.fetchall(_HEADS, (chat_ids,))
    return {row["id"]: (row["last_seq"], row["version"]) for row in rows}


async def changes_after(db: Database, chat_id: uuid.UUID, since: int, upto: int, limit: int) -> tuple[
        int, list[tuple[int, uuid.UUID, dict[str, Any] | None]]] | None:
    """The messages at or before position ``upto`` edited or deleted after change marker ``since``, in the
    order of those changes (each message once, at its last change), up to ``limit`` of them, with the chat's
    change marker at the same instant: ``(marker, [(its change marker, message id, the message as a page shows
    it, or None once deleted)])``; None when the chat does not exist.

    Read through the index of changed messages (migration 0003): the cost follows the changes read, never the
    chat's messages.  With ``limit`` rows returned there may be more: ask again after the last one's marker.
    """
    rows = await db.fetchall(CHANGES_AFTER, {"chat": chat_id, "since": since, "upto": upto, "limit": limit})
    if not rows:
        return None
    found = [(row["changed"], row["id"], None if row["deleted_at"] is not None else message_json(row))
             for row in rows if row["id"] is not None]
    return rows[0]["version"], found


async def messages_after(db: Database, chat_id: uuid.UUID, after: int,
                         limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` messages after position ``after``, oldest first, as ``(position, message as a page has it)``."""
    rows = await db.fetchall(_AFTER, (chat_id, after, limit))
    return [(row["seq"], message_json(row)) for row in rows]


async def message(db: Database, chat_id: uuid.UUID, message_id: uuid.UUID) -> tuple[int, dict[str, Any]] | None:
    """One message of a chat as ``(position, message as a page shows it)``, or None."""
    row = await db.fetchone(_MESSAGE, (chat_id, message_id))
    return None if row is None else (row["seq"], message_json(row))


def iterator(chat_id: uuid.UUID, seq: int) -> str:
    """The iterator "just after position ``seq``" of the chat (what ``next.iterator`` would be)."""
    return cursor.encode(chat_id, seq)


def position(text: str, chat_id: uuid.UUID) -> int:
    """The position an iterator of the chat names; raises the 400 ``bad-cursor`` ApiError otherwise."""
    return cursor.decode(text, chat_id)
