"""The public interface of ``messenger_chats``: the only module other plugins may import.

Membership queries for plugins that must respect who may see which chat (search does):

* :func:`chats_of_account` -- the chats in which an account owns a member;
* :func:`member_scope` -- the chats a chat member id may see.

and the error codes it shares with them (``chat_not_found``, ``user_not_found``, ``bad_cursor``),
so that each is defined once.

The ``messages`` table is part of this contract too; other plugins may read these columns (and
add their own indexes on them, after this plugin's migrations, ``Migrations(..., after=("messenger_chats",))``)::

    messages(id uuid PRIMARY KEY,
             chat_id uuid NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
             seq bigint NOT NULL,            -- position in the chat, 1, 2, 3... in commit order
             member_id uuid NOT NULL REFERENCES chat_members(id),
             text text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(),
             UNIQUE (chat_id, seq))

Rows are only ever inserted (never updated or deleted by the API).  The other tables and every
other module of this package are internal.
"""

from __future__ import annotations

import uuid

from messenger_core import Database

from .errors import bad_cursor, chat_not_found, user_not_found

__all__ = ["bad_cursor", "chat_not_found", "chats_of_account", "member_scope", "user_not_found"]

_CHATS_OF_ACCOUNT = """
SELECT DISTINCT chat_id FROM chat_members WHERE account_id = %s ORDER BY chat_id
"""
_MEMBER = "SELECT chat_id, account_id FROM chat_members WHERE id = %s"


def _as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


async def chats_of_account(db: Database, account_id: str | uuid.UUID) -> list[uuid.UUID]:
    """Ids of the chats in which ``account_id`` owns at least one member (sorted; maybe empty).

    ``account_id`` is a UUID or its string form (32 hex characters); a string that is not a UUID
    raises ``ValueError``.  Database outages raise ``DatabaseUnavailable``.
    """
    rows = await db.fetchall(_CHATS_OF_ACCOUNT, (_as_uuid(account_id),))
    return [row["chat_id"] for row in rows]


async def member_scope(db: Database, member_id: uuid.UUID) -> list[uuid.UUID] | None:
    """The chats a member may see, or None when no member has this id.

    A member linked to an account (auth on when it joined) sees every chat of that account; a
    member without an account (auth off) sees only its own chat.
    """
    row = await db.fetchone(_MEMBER, (_as_uuid(member_id),))
    if row is None:
        return None
    if row["account_id"] is not None:
        return await chats_of_account(db, row["account_id"])
    return [row["chat_id"]]
