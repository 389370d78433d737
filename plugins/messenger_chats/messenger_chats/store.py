"""Chats, members and messages in PostgreSQL, with the cache in front of the hot reads.

Positions: every message gets ``seq`` = its chat's ``last_seq + 1`` in the *same statement* that
inserts it (``POST_MESSAGES``).  The UPDATE takes the chat row's lock, so posters of one chat run
one after the other and a message with a higher ``seq`` always commits after every lower one: a
reader that sees message ``n`` sees every message before it, and a client polling with its last
position can neither miss nor repeat one.  Pages are keyset reads on ``UNIQUE (chat_id, seq)``.

Posts are group-committed (``messenger_core.batch``): the posts that arrive while this process's
previous insert is running go to PostgreSQL together, in one statement and one commit, and each
request answers 201 only once that commit is done.  Under load this divides the cost of a post
(the round trip, the commit, the chat row's lock, the cache invalidation) by the batch's size;
an idle server still inserts each post at once.  ``CHATS_POST_BATCH=1`` turns it off: each post is
its own insert, and they run concurrently through the pool.

Cache (``runtime.cache``, memory or Redis):

* facts that never change once true: "chat C exists", "member M belongs to chat C (and account A)",
  "account A owns a member of chat C" -- so a hot read with auth on touches only the cache;
* full pages (``limit`` messages): no later message can ever enter them, they are plain keys that
  are never invalidated;
* the last, partial page of a read: a field of the chat's *tail group*, invalidated by every new
  message of the chat.  Only cached when every process sees the same cache (Redis, or a single
  process), since another worker's memory could not be invalidated.

Facts and full pages never change, so each process also keeps the ones it has seen in a small
in-process LRU (``_local_facts``, ``_local_pages``) in front of Redis: a hot read asks Redis for
none of them (and, with the session in the core's near cache, for nothing at all).  Partial pages
are never kept there.

An invalidation that cannot reach Redis is replayed by the core cache before its next command that
gets through, so a tail page cached before an outage does not outlive it; ``CHATS_TAIL_PAGE_TTL``
bounds it in any case (say another process reads it while this one is still cut off).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from messenger_core import Batcher, Cache, Database, Lane, MemoryCache, dumps, metrics

from . import cursor
from .errors import bad_cursor, chat_not_found
from .settings import ChatsSettings

log = logging.getLogger("messenger.chats")

LOCAL_FACTS = 20_000  # facts kept in each process (about 250 bytes each)
LOCAL_PAGES = 256  # full pages kept in each process ...
LOCAL_PAGE_MAX_BYTES = 64 * 1024  # ... when they are no larger than this (at most 16 MB per process)
POST_BATCH = metrics.histogram("messenger_chats_post_batch_size", "Posts one insert carried (group commit)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

INSERT_CHAT = "INSERT INTO chats (id, name) VALUES (%s, %s)"
INSERT_MEMBER = """
INSERT INTO chat_members (id, chat_id, user_name, account_id)
SELECT %s, id, %s, %s FROM chats WHERE id = %s
"""
CHAT_EXISTS = "SELECT 1 AS found FROM chats WHERE id = %s"
MEMBER = "SELECT chat_id, account_id FROM chat_members WHERE id = %s"
ACCOUNT_IN_CHAT = "SELECT 1 AS found FROM chat_members WHERE account_id = %s AND chat_id = %s LIMIT 1"
# One statement, one transaction for a whole batch of posts (see ``post_message``).  The chats' rows
# are locked in id order (ORDER BY sorts before FOR NO KEY UPDATE locks), so the batches of several
# processes can never deadlock; each chat's last_seq grows by its number of posts, which take the
# positions after the old value in arrival order.  The clock is read once the UPDATE is done (so
# after every lock was granted), and the batch's messages are one microsecond apart: created_at
# follows seq, also across batches, since a chat's next batch reads its clock only after this one
# committed, which takes far longer than CHATS_POST_BATCH (at most 1000) microseconds.
POST_MESSAGES = """
WITH batch AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(chat_ids)s::uuid[], %(member_ids)s::uuid[], %(texts)s::text[])
        WITH ORDINALITY AS b (id, chat_id, member_id, text, ord)
),
locked AS (
    SELECT c.id, g.n FROM chats AS c
    JOIN (SELECT chat_id, count(*) AS n FROM batch GROUP BY chat_id) AS g ON g.chat_id = c.id
    ORDER BY c.id
    FOR NO KEY UPDATE OF c
),
position AS (
    UPDATE chats AS c SET last_seq = c.last_seq + locked.n FROM locked WHERE c.id = locked.id
    RETURNING c.id, c.last_seq - locked.n AS base
),
clock AS (
    SELECT clock_timestamp() AS now FROM (SELECT count(*) FROM position) AS updated
)
INSERT INTO messages (id, chat_id, seq, member_id, text, created_at)
SELECT b.id, b.chat_id, p.base + row_number() OVER (PARTITION BY b.chat_id ORDER BY b.ord),
       b.member_id, b.text, clock.now + b.ord * interval '1 microsecond'
FROM batch AS b JOIN position AS p ON p.id = b.chat_id CROSS JOIN clock
RETURNING id
"""
# One statement, one snapshot: the chat's last_seq (no row: unknown chat) and the page after
# ``after`` (no message: a row of NULLs), read on the (chat_id, seq) index.
PAGE = """
SELECT c.last_seq, m.id, m.member_id, m.text, m.created_at, m.seq
FROM chats AS c
LEFT JOIN LATERAL (
    SELECT id, member_id, text, created_at, seq FROM messages
    WHERE chat_id = %(chat_id)s AND seq > %(after)s
    ORDER BY seq
    LIMIT %(limit)s
) AS m ON true
WHERE c.id = %(chat_id)s
ORDER BY m.seq
"""


@dataclass(frozen=True)
class Member:
    """A chat member: its chat and, when it joined with auth on, its account."""

    chat_id: uuid.UUID
    account_id: uuid.UUID | None


@dataclass(frozen=True)
class Post:
    """A message on its way into the table (its id is chosen before the insert)."""

    message_id: uuid.UUID
    chat_id: uuid.UUID
    member_id: uuid.UUID
    text: str


def _timestamp(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")


def encode_page(chat_id: uuid.UUID, after: int, rows: list[dict[str, Any]]) -> bytes:
    """The JSON body of a page: messages oldest first and the iterator after the last one."""
    messages = [{"message_id": row["id"].hex, "user_id": row["member_id"].hex, "text": row["text"],
                 "created_at": _timestamp(row["created_at"])} for row in rows]
    last = rows[-1]["seq"] if rows else after
    return dumps({"messages": messages, "next": {"iterator": cursor.encode(chat_id, last)}})


class ChatStore:
    """Every query of the plugin, with the cache in front (one per process, in ``runtime.state``)."""

    def __init__(self, db: Database, cache: Cache, settings: ChatsSettings) -> None:
        self.db = db
        self.cache = cache
        self.settings = settings
        self._local_facts = MemoryCache(LOCAL_FACTS, settings.fact_ttl)
        self._local_pages = MemoryCache(LOCAL_PAGES, settings.page_ttl)
        self._local_page_bytes = min(LOCAL_PAGE_MAX_BYTES, settings.page_max_bytes)
        # group commit, unless CHATS_POST_BATCH=1: then every post is its own insert, run at once
        # through the pool (concurrently with the others), as without a batcher
        self.posts: Batcher[Post, uuid.UUID | None] | None = None
        self._lane: Lane | None = None
        if settings.post_batch > 1:
            self.posts = Batcher(self._insert_posts, settings.post_batch)
            self._lane = db.lane()  # the batcher runs one insert at a time: it keeps a connection

    # ---- keys ----------------------------------------------------------------------------------

    @staticmethod
    def tail_group(chat_id: uuid.UUID) -> str:
        """The cache group of the chat's partial pages (invalidated by each new message)."""
        return f"chats:{chat_id.hex}:tail"

    @staticmethod
    def full_page_key(chat_id: uuid.UUID, after: int, limit: int) -> str:
        """The cache key of a full page (never invalidated: it cannot change)."""
        return f"chats:{chat_id.hex}:page:{after}:{limit}"

    # ---- cached facts --------------------------------------------------------------------------

    async def _fact(self, key: str) -> bytes | None:
        """A fact from this process's copy, else from the shared cache (then kept here too)."""
        value = await self._local_facts.get(key)
        if value is None:
            value = await self.cache.get(key)
            if value is not None:
                await self._local_facts.set(key, value)
        return value

    async def _remember(self, key: str, value: bytes) -> None:
        """Cache a fact here and in the shared cache."""
        await self._local_facts.set(key, value)
        await self.cache.set(key, value, self.settings.fact_ttl)

    async def chat_exists(self, chat_id: uuid.UUID) -> bool:
        """Whether the chat exists (cached once true)."""
        key = f"chats:{chat_id.hex}:exists"
        if await self._fact(key) is not None:
            return True
        if await self.db.fetchone(CHAT_EXISTS, (chat_id,)) is None:
            return False
        await self._remember(key, b"1")
        return True

    async def member(self, member_id: uuid.UUID) -> Member | None:
        """The member's chat and account, or None (cached once found)."""
        key = f"chats:member:{member_id.hex}"
        cached = await self._fact(key)
        if cached is not None:
            chat_hex, _, account_hex = cached.decode("ascii").partition(":")
            return Member(uuid.UUID(chat_hex), uuid.UUID(account_hex) if account_hex else None)
        row = await self.db.fetchone(MEMBER, (member_id,))
        if row is None:
            return None
        member = Member(row["chat_id"], row["account_id"])
        await self._remember_member(member_id, member)
        return member

    async def _remember_member(self, member_id: uuid.UUID, member: Member) -> None:
        account = member.account_id.hex if member.account_id else ""
        await self._remember(f"chats:member:{member_id.hex}", f"{member.chat_id.hex}:{account}".encode("ascii"))
        if member.account_id is not None:
            await self._remember(self._account_key(member.chat_id, member.account_id), b"1")

    @staticmethod
    def _account_key(chat_id: uuid.UUID, account_id: uuid.UUID) -> str:
        return f"chats:{chat_id.hex}:account:{account_id.hex}"

    async def account_in_chat(self, chat_id: uuid.UUID, account_id: uuid.UUID) -> bool:
        """Whether the account owns a member of the chat (cached once true)."""
        key = self._account_key(chat_id, account_id)
        if await self._fact(key) is not None:
            return True
        if await self.db.fetchone(ACCOUNT_IN_CHAT, (account_id, chat_id)) is None:
            return False
        await self._remember(key, b"1")
        return True

    # ---- writes --------------------------------------------------------------------------------

    async def create_chat(self, name: str) -> uuid.UUID:
        """A new chat (names may repeat)."""
        chat_id = uuid.uuid4()
        await self.db.execute(INSERT_CHAT, (chat_id, name))
        await self._remember(f"chats:{chat_id.hex}:exists", b"1")
        return chat_id

    async def add_member(self, chat_id: uuid.UUID, user_name: str,
                         account_id: uuid.UUID | None) -> uuid.UUID | None:
        """A new member of the chat (linked to ``account_id`` if given), or None: no such chat."""
        member_id = uuid.uuid4()
        if not await self.db.execute(INSERT_MEMBER, (member_id, user_name, account_id, chat_id)):
            return None
        await self._remember_member(member_id, Member(chat_id, account_id))
        return member_id

    async def post_message(self, chat_id: uuid.UUID, member_id: uuid.UUID, text: str) -> uuid.UUID | None:
        """Store a message at the chat's next position; None when the chat does not exist.

        Returns once the message is committed and every cached partial page of its chat is stale.
        """
        post = Post(uuid.uuid4(), chat_id, member_id, text)
        if self.posts is None:
            return (await self._insert([post]))[0]
        return await self.posts.submit(post)

    async def _insert_posts(self, posts: list[Post]) -> Sequence[uuid.UUID | None | BaseException]:
        """The batch's flush: insert them all at once; a batch that a row's error refused goes one by one.

        An outage (503) fails the whole batch, as it would fail each post alone.
        """
        POST_BATCH.observe(len(posts))
        try:
            return await self._insert(posts)
        except psycopg.Error as exc:
            if len(posts) == 1:
                raise
            results: list[uuid.UUID | None | BaseException] = []
            for post in posts:  # isolate the post(s) at fault: the others are stored as usual
                try:
                    results += await self._insert([post])
                except psycopg.Error as alone:
                    results.append(alone)
            log.warning("chats: a batch of %d posts failed (%s); inserted one by one instead", len(posts), exc)
            return results

    async def _insert(self, posts: list[Post]) -> list[uuid.UUID | None]:
        run = self.db.fetchall if self._lane is None else self._lane.fetchall
        rows = await run(POST_MESSAGES, {
            "ids": [post.message_id for post in posts], "chat_ids": [post.chat_id for post in posts],
            "member_ids": [post.member_id for post in posts], "texts": [post.text for post in posts]})
        stored = {row["id"] for row in rows}
        chats = {post.chat_id for post in posts if post.message_id in stored}
        if log.isEnabledFor(logging.DEBUG):
            log.debug("chats: %d post(s) into %d chat(s) in one insert", len(posts), len(chats))
        await self.cache.invalidate(*(self.tail_group(chat_id) for chat_id in chats))
        return [post.message_id if post.message_id in stored else None for post in posts]

    # ---- pages ---------------------------------------------------------------------------------

    async def page(self, chat_id: uuid.UUID, after: int, limit: int) -> bytes:
        """The encoded page of up to ``limit`` messages after position ``after``.

        404 ``chat-not-found`` for an unknown chat, 400 ``bad-cursor`` when ``after`` lies beyond
        the chat's last message.  A cached page is served even while PostgreSQL is down.
        """
        use_cache = self.settings.cache_pages
        group, field = self.tail_group(chat_id), f"{after}:{limit}"
        token = None
        full_key = self.full_page_key(chat_id, after, limit)
        if use_cache:
            cached = await self._local_pages.get(full_key)
            if cached is not None:
                return cached
            cached = await self.cache.group_get(group, field)
            if cached is None:
                cached = await self.cache.get(full_key)
                if cached is not None and len(cached) <= self._local_page_bytes:
                    await self._local_pages.set(full_key, cached)
            if cached is not None:
                return cached
            token = await self.cache.group_token(group)  # before the read: a racing post wins
        rows = await self.db.fetchall(PAGE, {"chat_id": chat_id, "after": after, "limit": limit})
        if not rows:
            raise chat_not_found()
        if after > rows[0]["last_seq"]:
            raise bad_cursor()
        rows = [row for row in rows if row["id"] is not None]
        body = encode_page(chat_id, after, rows)
        if use_cache and len(body) <= self.settings.page_max_bytes:
            if len(rows) == limit:
                await self.cache.set(full_key, body, self.settings.page_ttl)
                if len(body) <= self._local_page_bytes:
                    await self._local_pages.set(full_key, body)
            elif self.cache.shared and token is not None:
                await self.cache.group_set(group, field, body, token, self.settings.tail_page_ttl)
        return body
