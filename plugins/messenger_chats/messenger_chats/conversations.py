"""Conversations in PostgreSQL: joining (open, private, invites), leaving, read markers, the chat list,
edit and delete.

Every write here locks its chat's row first (``FOR SHARE`` to join or mark read, an UPDATE of it
otherwise), so joins, leaves, marks, deletes and the post batches of one chat never interleave their
counters (and never deadlock: the chat's row is always the first lock taken).  A change that can make
something cached about the chat wrong (an edit, a delete, a leave or a removal) moves
``chats.version`` on in its transaction (an edit or a delete also writes it to the message's ``changed``,
migration 0003), and :meth:`ChatStore.changed` evicts the old version from
every process before the request answers.  Each write sends its chat event (``events.notify``) inside
its transaction.

Unread counts are arithmetic on the chat's row and the account's marker (migration 0002): the list
of an account's chats reads one ``chat_accounts`` row, one ``chats`` row and the newest live message
(one backward step on ``UNIQUE (chat_id, seq)``) per chat; no chat's messages are scanned or counted.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from messenger_core import Database

from . import cursor, events
from .errors import bad_cursor, chat_not_found, message_not_found, user_not_found
from .store import ChatStore, Member, message_json

INVITE_BYTES = 24  # 192 random bits

JOIN_CHAT = "SELECT private, owner_id, last_seq, deleted_total, version FROM chats WHERE id = %s FOR SHARE"
IS_IN_CHAT = "SELECT 1 AS found FROM chat_accounts WHERE account_id = %s AND chat_id = %s"
VALID_INVITE = "SELECT 1 AS found FROM chat_invites WHERE token_hash = %s AND chat_id = %s AND expires_at > now()"
INSERT_MEMBER = "INSERT INTO chat_members (id, chat_id, user_name, account_id) VALUES (%s, %s, %s, %s)"
JOIN_ACCOUNT = """
INSERT INTO chat_accounts (account_id, chat_id, members, read_seq, deleted_upto)
VALUES (%s, %s, 1, %s, %s)
ON CONFLICT (account_id, chat_id) DO UPDATE SET members = chat_accounts.members + 1
"""
INSERT_INVITE = """
INSERT INTO chat_invites (token_hash, chat_id, created_by, expires_at)
VALUES (%s, %s, %s, now() + %s * interval '1 second')
"""
BUMP_VERSION = "UPDATE chats SET version = version + 1 WHERE id = %s RETURNING owner_id, version"
PRESENT_MEMBER = """
SELECT account_id FROM chat_members WHERE id = %s AND chat_id = %s AND left_at IS NULL FOR UPDATE
"""
LEAVE_MEMBER = "UPDATE chat_members SET left_at = now() WHERE id = %s"
ONE_MEMBER_LESS = """
UPDATE chat_accounts SET members = members - 1 WHERE account_id = %s AND chat_id = %s AND members > 1
"""
LAST_MEMBER_GONE = "DELETE FROM chat_accounts WHERE account_id = %s AND chat_id = %s"
MARK_CHAT = "SELECT last_seq, deleted_total FROM chats WHERE id = %s FOR SHARE"
MARKER = "SELECT read_seq, deleted_upto FROM chat_accounts WHERE account_id = %s AND chat_id = %s FOR UPDATE"
DELETED_BETWEEN = """
SELECT count(*) AS n FROM messages
WHERE chat_id = %s AND seq > %s AND seq <= %s AND deleted_at IS NOT NULL
"""
MOVE_MARKER = "UPDATE chat_accounts SET read_seq = %s, deleted_upto = %s WHERE account_id = %s AND chat_id = %s"
# the author: one of the account's members of the chat (auth on), or the member itself (auth off)
AUTHOR = """
(member_id IN (SELECT id FROM chat_members WHERE chat_id = %(chat)s AND account_id = %(account)s)
 OR (%(account)s::uuid IS NULL AND member_id = %(member)s
     AND EXISTS (SELECT 1 FROM chat_members WHERE id = %(member)s AND left_at IS NULL)))
"""
EDIT_MESSAGE = f"""
UPDATE messages SET text = %(text)s, edited_at = clock_timestamp(), changed = %(version)s
WHERE id = %(message)s AND chat_id = %(chat)s AND deleted_at IS NULL AND {AUTHOR}
RETURNING id, member_id, text, created_at, edited_at, seq
"""
BUMP_FOR_DELETE = """
UPDATE chats SET version = version + 1, deleted_total = deleted_total + 1 WHERE id = %s RETURNING version
"""
DELETE_MESSAGE = f"""
UPDATE messages SET deleted_at = clock_timestamp(), text = '', changed = %(version)s
WHERE id = %(message)s AND chat_id = %(chat)s AND deleted_at IS NULL AND {AUTHOR}
RETURNING seq
"""
COUNT_DELETED = "UPDATE chat_accounts SET deleted_upto = deleted_upto + 1 WHERE chat_id = %s AND read_seq >= %s"
#: A timestamp in SQL as the API writes it (``store.timestamp``): ISO 8601 in UTC with microseconds.
_ISO = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
_HEX = "encode(uuid_send({}), 'hex')"  # uuid.hex
#: The chat summaries of an account (parameter ``account``), the most recently active first, each as JSON built
#: by PostgreSQL (all but ``read_iterator``, which needs the iterator key: :func:`summaries` adds it).  ``{only}``
#: is empty for the whole list, or narrows it to one chat (parameter ``chat``): one query shape for both.
_SUMMARIES = f"""
SELECT c.id, a.read_seq, json_build_object(
    'chat_id', {_HEX.format('c.id')}, 'chat_name', c.name, 'private', c.private,
    'owner', coalesce(c.owner_id = a.account_id, false),
    'my_user_ids', ARRAY(SELECT {_HEX.format('u.id')} FROM chat_members AS u
                         WHERE u.account_id = a.account_id AND u.chat_id = a.chat_id AND u.left_at IS NULL
                         ORDER BY u.created_at, u.id),
    'last_message', CASE WHEN lm.id IS NULL THEN NULL ELSE json_build_object(
        'message_id', {_HEX.format('lm.id')}, 'user_id', {_HEX.format('lm.member_id')}, 'text', lm.text,
        'created_at', {_ISO.format('lm.created_at')}, 'edited_at', {_ISO.format('lm.edited_at')}) END,
    'unread', (c.last_seq - a.read_seq) - (c.deleted_total - a.deleted_upto)
)::text AS summary
FROM chat_accounts AS a
JOIN chats AS c ON c.id = a.chat_id
LEFT JOIN LATERAL (
    SELECT id, member_id, text, created_at, edited_at FROM messages
    WHERE chat_id = a.chat_id AND deleted_at IS NULL
    ORDER BY seq DESC
    LIMIT 1
) AS lm ON true
WHERE a.account_id = %(account)s{{only}}
ORDER BY coalesce(lm.created_at, a.joined_at) DESC, c.id
"""
#: The chat list of an account (parameter: ``account``).  Tests EXPLAIN it.
LIST_CHATS = _SUMMARIES.format(only="")
#: One chat's summary for an account (parameters: ``account``, ``chat``), exactly as the list has it.
ONE_CHAT = _SUMMARIES.format(only=" AND a.chat_id = %(chat)s")
#: The changes of a chat after a change marker (parameters ``chat``, ``since``, ``upto``, ``limit``): the chat's
#: version and the messages at or before ``upto`` edited or deleted after ``since``, in change order, read in one
#: statement (one snapshot) through the partial index of changed messages (migration 0003); ``changed > 0``
#: repeats the index's predicate, so that a generic plan may use it too.  Tests EXPLAIN it.
CHANGES_AFTER = """
SELECT c.version, m.id, m.member_id, m.text, m.created_at, m.edited_at, m.deleted_at, m.seq, m.changed
FROM chats AS c
LEFT JOIN LATERAL (
    SELECT id, member_id, text, created_at, edited_at, deleted_at, seq, changed FROM messages
    WHERE chat_id = c.id AND changed > 0 AND changed > %(since)s AND seq <= %(upto)s
    ORDER BY changed
    LIMIT %(limit)s
) AS m ON true
WHERE c.id = %(chat)s
"""
MEMBERS = """
SELECT id, user_name, account_id FROM chat_members WHERE chat_id = %s AND left_at IS NULL ORDER BY created_at, id
"""


def invite_hash(token: str) -> bytes:
    """What is stored of an invite: its SHA-256 (the token itself is only ever in the answer)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


async def summaries(db: Database, account_id: uuid.UUID, chat_id: uuid.UUID | None = None) -> list[bytes]:
    """The account's chat summaries as JSON (API.md, Conversations), the most recently active first; with
    ``chat_id`` only that chat's (none when the account is not in it)."""
    if chat_id is None:
        rows = await db.fetchall(LIST_CHATS, {"account": account_id})
    else:
        rows = await db.fetchall(ONE_CHAT, {"account": account_id, "chat": chat_id})
    # '{..., "unread" : 3}' and the read iterator: PostgreSQL built everything else
    return [f'{row["summary"][:-1]}, "read_iterator" : "{cursor.encode(row["id"], row["read_seq"])}"}}'.encode()
            for row in rows]


@dataclass(frozen=True)
class Actor:
    """Who acts: the session's account (auth on), or the member named by ``?user_id=`` (auth off)."""

    account_id: uuid.UUID | None
    member_id: uuid.UUID | None = None


class Conversations:
    """The conversation queries over the process's :class:`ChatStore` (its database and cache)."""

    def __init__(self, store: ChatStore, invite_ttl: int) -> None:
        self.store = store
        self.db = store.db
        self.invite_ttl = invite_ttl

    async def join(self, chat_id: uuid.UUID, user_name: str, account_id: uuid.UUID | None,
                   invite: str | None) -> uuid.UUID | None:
        """A new member of the chat, or None: no such chat, or a private one the account may not join.

        With auth on, a private chat is joined by its owner, by an account already in it, or with a
        valid invite; with auth off there are no accounts, and every chat is open.
        """
        member_id = uuid.uuid4()
        async with self.db.transaction() as conn:
            chat = await (await conn.execute(JOIN_CHAT, (chat_id,))).fetchone()
            if chat is None:
                return None
            if account_id is not None and chat["private"] and chat["owner_id"] != account_id:
                if not await self._may_join(conn, chat_id, account_id, invite):
                    return None
            await conn.execute(INSERT_MEMBER, (member_id, chat_id, user_name, account_id))
            if account_id is not None:
                await conn.execute(JOIN_ACCOUNT, (account_id, chat_id, chat["last_seq"], chat["deleted_total"]))
            # "s": the chat's last position at this commit (its row is locked): a stream carries the chat from there
            await events.notify(conn, {"k": "join", "c": chat_id.hex, "u": member_id.hex,
                                       "a": account_id.hex if account_id else None, "s": chat["last_seq"],
                                       "v": chat["version"]})
        await self.store.remember_member(member_id, Member(chat_id, account_id), chat["version"])
        return member_id

    @staticmethod
    async def _may_join(conn: psycopg.AsyncConnection, chat_id: uuid.UUID, account_id: uuid.UUID,
                        invite: str | None) -> bool:
        if await (await conn.execute(IS_IN_CHAT, (account_id, chat_id))).fetchone() is not None:
            return True
        if invite is None:
            return False
        found = await conn.execute(VALID_INVITE, (invite_hash(invite), chat_id))
        return await found.fetchone() is not None

    async def create_invite(self, chat_id: uuid.UUID, account_id: uuid.UUID) -> str:
        """A new invite to the chat (the caller checked that the account is in it)."""
        token = secrets.token_urlsafe(INVITE_BYTES)
        await self.db.execute(INSERT_INVITE, (invite_hash(token), chat_id, account_id, self.invite_ttl))
        return token

    async def leave(self, chat_id: uuid.UUID, member_id: uuid.UUID, actor: Actor) -> None:
        """The member leaves (its own account, or the member itself with auth off) or is removed (owner).

        404 ``user-not-found`` when it is not a present member of the chat the actor may remove.
        """
        async with self.db.transaction() as conn:
            chat = await (await conn.execute(BUMP_VERSION, (chat_id,))).fetchone()
            if chat is None:
                raise chat_not_found()
            member = await (await conn.execute(PRESENT_MEMBER, (member_id, chat_id))).fetchone()
            if member is None:
                raise user_not_found()
            account = member["account_id"]
            if actor.account_id is None:
                allowed = actor.member_id == member_id
            else:
                allowed = actor.account_id in (account, chat["owner_id"])
            if not allowed:
                raise user_not_found()
            await conn.execute(LEAVE_MEMBER, (member_id,))
            if account is not None:
                less = await conn.execute(ONE_MEMBER_LESS, (account, chat_id))
                if less.rowcount == 0:
                    await conn.execute(LAST_MEMBER_GONE, (account, chat_id))
            await events.notify(conn, {"k": "leave", "c": chat_id.hex, "u": member_id.hex,
                                       "a": account.hex if account else None})
        await self.store.changed(chat_id)

    async def mark_read(self, chat_id: uuid.UUID, account_id: uuid.UUID, seq: int) -> bool:
        """Move the account's read marker forward to ``seq`` (never back); False: not in the chat.

        400 ``bad-cursor`` when ``seq`` lies beyond the chat's last message.
        """
        async with self.db.transaction() as conn:
            chat = await (await conn.execute(MARK_CHAT, (chat_id,))).fetchone()
            if chat is None:
                return False
            marker = await (await conn.execute(MARKER, (account_id, chat_id))).fetchone()
            if marker is None:
                return False
            if seq > chat["last_seq"]:
                raise bad_cursor()
            if seq <= marker["read_seq"]:
                return True
            if seq == chat["last_seq"]:
                deleted = chat["deleted_total"]
            else:
                between = await conn.execute(DELETED_BETWEEN, (chat_id, marker["read_seq"], seq))
                deleted = marker["deleted_upto"] + (await between.fetchone())["n"]
            await conn.execute(MOVE_MARKER, (seq, deleted, account_id, chat_id))
        return True

    async def chats_of(self, account_id: uuid.UUID) -> bytes:
        """The body of ``GET /v1/chats``: the account's chat summaries, the most recently active first."""
        return b'{"chats":[' + b",".join(await summaries(self.db, account_id)) + b"]}"

    async def members(self, chat_id: uuid.UUID, actor: Actor) -> list[dict[str, Any]]:
        """The chat's present members; ``mine``: the actor's (its account's, or itself with auth off)."""
        rows = await self.db.fetchall(MEMBERS, (chat_id,))
        return [{"user_id": row["id"].hex, "user_name": row["user_name"],
                 "mine": (row["account_id"] == actor.account_id if actor.account_id is not None
                          else row["id"] == actor.member_id)} for row in rows]

    async def edit(self, chat_id: uuid.UUID, message_id: uuid.UUID, text: str, actor: Actor) -> dict[str, Any]:
        """Replace the text of one of the actor's messages; the message as a page now shows it.

        404 ``message-not-found`` when it is not a live message of the actor's in this chat.
        """
        params = {"chat": chat_id, "message": message_id, "text": text, "account": actor.account_id,
                  "member": actor.member_id}
        async with self.db.transaction() as conn:
            chat = await (await conn.execute(BUMP_VERSION, (chat_id,))).fetchone()
            if chat is None:
                raise chat_not_found()
            params["version"] = chat["version"]  # the message's change marker (migration 0003)
            row = await (await conn.execute(EDIT_MESSAGE, params)).fetchone()
            if row is None:
                raise message_not_found()
            await events.notify(conn, {"k": "edit", "c": chat_id.hex, "m": message_id.hex, "s": row["seq"],
                                       "v": chat["version"]})
        await self.store.changed(chat_id)
        return message_json(row)

    async def delete(self, chat_id: uuid.UUID, message_id: uuid.UUID, actor: Actor) -> None:
        """Delete one of the actor's messages (its text goes too); 404 ``message-not-found`` otherwise."""
        params = {"chat": chat_id, "message": message_id, "account": actor.account_id, "member": actor.member_id}
        async with self.db.transaction() as conn:
            chat = await (await conn.execute(BUMP_FOR_DELETE, (chat_id,))).fetchone()
            if chat is None:
                raise chat_not_found()
            params["version"] = chat["version"]
            row = await (await conn.execute(DELETE_MESSAGE, params)).fetchone()
            if row is None:
                raise message_not_found()
            await conn.execute(COUNT_DELETED, (chat_id, row["seq"]))
            await events.notify(conn, {"k": "delete", "c": chat_id.hex, "m": message_id.hex, "s": row["seq"],
                                       "v": chat["version"]})
        await self.store.changed(chat_id)
