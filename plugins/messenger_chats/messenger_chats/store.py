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

Cache (``runtime.cache``, memory or Redis).  Edits, deletes and members leaving change what used to
be immutable, so every cached view of a chat is keyed by the chat's *version* (``chats.version``,
moved on in the same transaction as each edit, delete, leave or removal):

* the version itself: a field of the chat's version group, invalidated once the change is committed
  and before its request is answered.  With Redis it is also held in each process's near cache
  (``runtime.near``, coherent over pub/sub: see ``messenger_core.near``), so a hot read asks Redis
  for nothing; with the memory cache of a one-process server it lives in that cache; with the memory
  cache of several workers (which cannot invalidate each other) it is read from PostgreSQL each time;
* facts keyed by the version, true for that version forever: "member M is in chat C (account A)",
  "account A has a member in chat C"; and "chat C exists (private or not, owned by A)", which never
  changes at all;
* full pages (``limit`` messages) keyed by the version their own read saw: no later message can ever
  enter them and an edit or delete gives the chat a new version, so they are never invalidated;
* the last, partial page of a read: a field (also keyed by the version) of the chat's *tail group*,
  invalidated by every new message of the chat.  Only cached when every process sees the same cache
  (Redis, or a single process), since another worker's memory could not be invalidated.

Facts and full pages keyed by a version never change, so each process also keeps the ones it has
seen in a small in-process LRU (``_local_facts``, ``_local_pages``) in front of Redis.  Partial pages
are never kept there.

The facts and the versions decide who may read a chat, so what the shared cache holds of them is
sealed by the runtime's :class:`~messenger_core.Signer` (``CACHE_SECRET``, an HMAC binding the value to
its key): an entry written into Redis by anyone else, or altered, does not open and counts as a miss,
and PostgreSQL decides.

An invalidation that cannot reach Redis is replayed by the core cache before its next command that
gets through, so a tail page cached before an outage does not outlive it; ``CHATS_TAIL_PAGE_TTL``
bounds it in any case (say another process reads it while this one is still cut off).  A version
whose eviction could not reach Redis is the near cache's documented gap (``NEAR_CACHE_TTL`` bounds it).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from messenger_core import Batcher, Cache, Database, Lane, MemoryCache, NearCache, Signer, dumps, metrics

from . import cursor
from .errors import bad_cursor, chat_not_found
from .settings import ChatsSettings

log = logging.getLogger("messenger.chats")

LOCAL_FACTS = 20_000  # facts kept in each process (about 250 bytes each)
LOCAL_PAGES = 256  # full pages kept in each process ...
LOCAL_PAGE_MAX_BYTES = 64 * 1024  # ... when they are no larger than this (at most 16 MB per process)
POST_BATCH = metrics.histogram("messenger_chats_post_batch_size", "Posts one insert carried (group commit)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

INSERT_CHAT = "INSERT INTO chats (id, name, private, owner_id) VALUES (%s, %s, %s, %s)"
CHAT_INFO = "SELECT private, owner_id FROM chats WHERE id = %s"
CHAT_VERSION = "SELECT version FROM chats WHERE id = %s"
MEMBER = "SELECT account_id FROM chat_members WHERE id = %s AND chat_id = %s AND left_at IS NULL"
ACCOUNT_IN_CHAT = "SELECT 1 AS found FROM chat_accounts WHERE account_id = %s AND chat_id = %s"
# One statement, one transaction for a whole batch of posts (see ``post_message``).  The chats' rows
# are locked in id order (ORDER BY sorts before FOR NO KEY UPDATE locks), so the batches of several
# processes can never deadlock; each chat's last_seq grows by its number of posts, which take the
# positions after the old value in arrival order.  The clock is read once the UPDATE is done (so
# after every lock was granted), and the batch's messages are one microsecond apart: created_at
# follows seq, also across batches, since a chat's next batch reads its clock only after this one
# committed, which takes far longer than CHATS_POST_BATCH (at most 1000) microseconds.  The same
# statement sends one "post" event per chat (``events``), delivered to every listener on commit.
# Each poster's account (its member's) has read its chat up to its newest post (``marks``): that position lies past
# every older message, so every deleted message of the chat lies before it (deleted_upto = the total).
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
    RETURNING c.id, c.last_seq - locked.n AS base, c.last_seq AS last, c.deleted_total
),
notified AS (
    SELECT count(pg_notify('messenger_chats', json_build_object(
        'k', 'post', 'c', replace(p.id::text, '-', ''), 's', p.last)::text)) AS n
    FROM position AS p
),
clock AS (
    SELECT clock_timestamp() AS now FROM notified
),
inserted AS (
    INSERT INTO messages (id, chat_id, seq, member_id, text, created_at)
    SELECT b.id, b.chat_id, p.base + row_number() OVER (PARTITION BY b.chat_id ORDER BY b.ord),
           b.member_id, b.text, clock.now + b.ord * interval '1 microsecond'
    FROM batch AS b JOIN position AS p ON p.id = b.chat_id CROSS JOIN clock
    RETURNING id, chat_id, seq
),
marks AS (
    UPDATE chat_accounts AS a SET read_seq = r.seq, deleted_upto = r.deleted_total
    FROM (SELECT u.account_id, i.chat_id, max(i.seq) AS seq, max(p.deleted_total) AS deleted_total
          FROM inserted AS i JOIN batch AS b ON b.id = i.id JOIN position AS p ON p.id = i.chat_id
          JOIN chat_members AS u ON u.id = b.member_id
          WHERE u.account_id IS NOT NULL GROUP BY u.account_id, i.chat_id) AS r
    WHERE a.account_id = r.account_id AND a.chat_id = r.chat_id AND a.read_seq < r.seq
    RETURNING a.chat_id
)
SELECT id FROM inserted
"""
# One statement, one snapshot: the chat's last_seq and version (no row: unknown chat) and the page
# after ``after`` (no message: a row of NULLs), read on the (chat_id, seq) index; deleted messages
# are skipped, so an iterator taken before a deletion still continues right after its position.
# Rows stop once the texts before them already hold ``max_bytes`` bytes (a message's JSON is never
# shorter than its UTF-8 text), so a worker never loads much more than a page's bound; the first
# always comes.  ``taken`` counts the rows before that cut: more than were returned means the bytes cut
# the page (then no later message can ever enter it).
PAGE = """
SELECT c.last_seq, c.version, m.id, m.member_id, m.text, m.created_at, m.edited_at, m.seq, m.taken
FROM chats AS c
LEFT JOIN LATERAL (
    SELECT id, member_id, text, created_at, edited_at, seq, taken FROM (
        SELECT *, count(*) OVER () AS taken FROM (
            SELECT id, member_id, text, created_at, edited_at, seq,
                   sum(octet_length(text) + %(overhead)s) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING)
                       - octet_length(text) - %(overhead)s
                       AS before
            FROM messages
            WHERE chat_id = %(chat_id)s AND seq > %(after)s AND deleted_at IS NULL
            ORDER BY seq
            LIMIT %(limit)s
        ) AS windowed
    ) AS sized
    WHERE before < %(max_bytes)s
) AS m ON true
WHERE c.id = %(chat_id)s
ORDER BY m.seq
"""
#: Bytes of a message's JSON besides its text (ids, timestamp, keys, punctuation): 137, rounded down.
MESSAGE_OVERHEAD = 128


@dataclass(frozen=True)
class Member:
    """A present member of a chat: its chat and, when it joined with auth on, its account."""

    chat_id: uuid.UUID
    account_id: uuid.UUID | None


@dataclass(frozen=True)
class ChatInfo:
    """What never changes about a chat: whether it is private and who owns it (None: auth off)."""

    private: bool
    owner_id: uuid.UUID | None


@dataclass(frozen=True)
class Post:
    """A message on its way into the table (its id is chosen before the insert)."""

    message_id: uuid.UUID
    chat_id: uuid.UUID
    member_id: uuid.UUID
    text: str


def timestamp(value: datetime.datetime | None) -> str | None:
    """A timestamp as the API writes it: ISO 8601 in UTC with microseconds (None stays None)."""
    if value is None:
        return None
    return value.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    """One message as every page shows it (``id, member_id, text, created_at, edited_at`` of a row)."""
    return {"message_id": row["id"].hex, "user_id": row["member_id"].hex, "text": row["text"],
            "created_at": timestamp(row["created_at"]), "edited_at": timestamp(row["edited_at"])}


def encode_page(chat_id: uuid.UUID, after: int, rows: list[dict[str, Any]],
                max_bytes: int | None = None) -> tuple[bytes, bool]:
    """The JSON body of a page: messages oldest first and the iterator after the last one, and
    whether it was cut short to stay within ``max_bytes`` (it always holds the first message).

    The body is exactly ``dumps({"messages": [...], "next": {"iterator": ...}})``.
    """
    parts: list[bytes] = []
    size = 0
    for row in rows:
        part = dumps(message_json(row))
        if max_bytes is not None and parts and size + len(part) > max_bytes:
            break
        parts.append(part)
        size += len(part) + 1
    while True:
        last = rows[len(parts) - 1]["seq"] if parts else after
        body = (b'{"messages":[' + b",".join(parts) + b'],"next":'
                + dumps({"iterator": cursor.encode(chat_id, last)}) + b"}")
        if max_bytes is None or len(body) <= max_bytes or len(parts) <= 1:
            return body, len(parts) < len(rows)
        parts.pop()  # the envelope tipped it over


def is_empty_page(body: bytes) -> bool:
    """Whether an encoded page holds no message."""
    return body.startswith(b'{"messages":[]')


def _versioned(version: int) -> str:
    """The suffix of a key of a chat at ``version`` (none at 0: the keys of a never-changed chat)."""
    return f":v{version}" if version else ""


class ChatStore:
    """Every query of the plugin, with the cache in front (one per process, in ``runtime.state``)."""

    def __init__(self, db: Database, cache: Cache, settings: ChatsSettings, signer: Signer,
                 near: NearCache | None = None) -> None:
        self.db = db
        self.cache = cache
        self.near = near
        self.signer = signer
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
    def tail_field(after: int, limit: int, version: int = 0) -> str:
        """The field of a partial page in the tail group."""
        return f"{after}:{limit}{_versioned(version)}"

    @staticmethod
    def full_page_key(chat_id: uuid.UUID, after: int, limit: int, version: int = 0) -> str:
        """The cache key of a full page at a version of the chat (never invalidated: it cannot change)."""
        return f"chats:{chat_id.hex}:page:{after}:{limit}{_versioned(version)}"

    @staticmethod
    def version_group(chat_id: uuid.UUID) -> str:
        """The cache group holding the chat's version (invalidated by every edit, delete, leave)."""
        return f"chats:{chat_id.hex}:version"

    # ---- the chat's version --------------------------------------------------------------------

    async def chat_version(self, chat_id: uuid.UUID) -> int | None:
        """The chat's current version, or None when there is no such chat."""
        group = self.version_group(chat_id)
        near = self.near
        if near is None:
            return await self._shared_version(chat_id, group)
        held = near.get(group)
        if held is not None:
            return held
        with near.reading(group) as read:
            version = await self._shared_version(chat_id, group)
            if version is not None:
                read.keep(version, self.settings.fact_ttl)
            return version

    async def _shared_version(self, chat_id: uuid.UUID, group: str) -> int | None:
        token = None
        if self.cache.shared:
            raw = await self.cache.group_get(group, "v")
            opened = self.signer.open(group, raw) if raw is not None else None
            if opened is not None:
                return int(opened)
            token = await self.cache.group_token(group)  # before the read: a racing change wins
        row = await self.db.fetchone(CHAT_VERSION, (chat_id,))
        if row is None:
            return None
        if token is not None:
            sealed = self.signer.seal(group, str(row["version"]).encode("ascii"))
            await self.cache.group_set(group, "v", sealed, token, self.settings.fact_ttl)
        return row["version"]

    async def changed(self, chat_id: uuid.UUID) -> None:
        """After a committed change of the chat's version: no process may use the old one any more."""
        group = self.version_group(chat_id)
        if self.near is not None:
            await self.near.evict(group)
        else:
            await self.cache.invalidate(group)

    # ---- cached facts --------------------------------------------------------------------------

    async def _fact(self, key: str) -> bytes | None:
        """A fact from this process's copy, else from the shared cache (then kept here too)."""
        value = await self._local_facts.get(key)
        if value is None:
            sealed = await self.cache.get(key)
            value = self.signer.open(key, sealed) if sealed is not None else None  # None: not ours
            if value is not None:
                await self._local_facts.set(key, value)
        return value

    async def _remember(self, key: str, value: bytes) -> None:
        """Cache a fact here and (sealed) in the shared cache."""
        await self._local_facts.set(key, value)
        await self.cache.set(key, self.signer.seal(key, value), self.settings.fact_ttl)

    @staticmethod
    def _info_key(chat_id: uuid.UUID) -> str:
        return f"chats:{chat_id.hex}:info"

    async def chat_info(self, chat_id: uuid.UUID) -> ChatInfo | None:
        """Whether the chat is private and who owns it, or None: no such chat (cached once found)."""
        key = self._info_key(chat_id)
        cached = await self._fact(key)
        if cached is not None:
            private, _, owner = cached.decode("ascii").partition(":")
            return ChatInfo(private == "p", uuid.UUID(owner) if owner else None)
        row = await self.db.fetchone(CHAT_INFO, (chat_id,))
        if row is None:
            return None
        info = ChatInfo(row["private"], row["owner_id"])
        await self._remember_info(chat_id, info)
        return info

    async def _remember_info(self, chat_id: uuid.UUID, info: ChatInfo) -> None:
        owner = info.owner_id.hex if info.owner_id else ""
        await self._remember(self._info_key(chat_id), f"{'p' if info.private else 'o'}:{owner}".encode("ascii"))

    async def chat_exists(self, chat_id: uuid.UUID) -> bool:
        """Whether the chat exists (cached once true)."""
        return await self.chat_info(chat_id) is not None

    @staticmethod
    def _member_key(chat_id: uuid.UUID, member_id: uuid.UUID, version: int) -> str:
        return f"chats:{chat_id.hex}:member:{member_id.hex}{_versioned(version)}"

    async def member(self, chat_id: uuid.UUID, member_id: uuid.UUID) -> Member | None:
        """The member if it is one of the chat's present members (cached per version once found)."""
        version = await self.chat_version(chat_id)
        if version is None:
            return None
        key = self._member_key(chat_id, member_id, version)
        cached = await self._fact(key)
        if cached is not None:
            account_hex = cached.decode("ascii")
            return Member(chat_id, uuid.UUID(account_hex) if account_hex != "-" else None)
        row = await self.db.fetchone(MEMBER, (member_id, chat_id))
        if row is None:
            return None
        member = Member(chat_id, row["account_id"])
        await self.remember_member(member_id, member, version)
        return member

    async def remember_member(self, member_id: uuid.UUID, member: Member, version: int) -> None:
        """Cache "the member is in its chat" (and "its account is") at a version of the chat."""
        account = member.account_id.hex if member.account_id else "-"
        await self._remember(self._member_key(member.chat_id, member_id, version), account.encode("ascii"))
        if member.account_id is not None:
            await self._remember(self._account_key(member.chat_id, member.account_id, version), b"1")

    @staticmethod
    def _account_key(chat_id: uuid.UUID, account_id: uuid.UUID, version: int) -> str:
        return f"chats:{chat_id.hex}:account:{account_id.hex}{_versioned(version)}"

    async def account_in_chat(self, chat_id: uuid.UUID, account_id: uuid.UUID) -> bool:
        """Whether the account has a present member in the chat (cached per version once true)."""
        version = await self.chat_version(chat_id)
        if version is None:
            return False
        key = self._account_key(chat_id, account_id, version)
        if await self._fact(key) is not None:
            return True
        if await self.db.fetchone(ACCOUNT_IN_CHAT, (account_id, chat_id)) is None:
            return False
        await self._remember(key, b"1")
        return True

    # ---- writes --------------------------------------------------------------------------------

    async def create_chat(self, name: str, private: bool = False, owner_id: uuid.UUID | None = None) -> uuid.UUID:
        """A new chat (names may repeat), owned by ``owner_id`` (None with auth off)."""
        chat_id = uuid.uuid4()
        await self.db.execute(INSERT_CHAT, (chat_id, name, private, owner_id))
        await self._remember_info(chat_id, ChatInfo(private, owner_id))
        return chat_id

    async def post_message(self, chat_id: uuid.UUID, member_id: uuid.UUID, text: str) -> uuid.UUID | None:
        """Store a message at the chat's next position; None when the chat does not exist.

        Returns once the message is committed (the poster's account has then read the chat up to
        it) and every cached partial page of its chat is stale.
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

    async def page(self, chat_id: uuid.UUID, after: int, limit: int, cached: bool = True) -> bytes:
        """The encoded page of up to ``limit`` messages after position ``after``.

        404 ``chat-not-found`` for an unknown chat, 400 ``bad-cursor`` when ``after`` lies beyond
        the chat's last message.  A cached page is served even while PostgreSQL is down (as long as
        the chat's version is cached too).  ``cached=False`` reads PostgreSQL (a waiter that knows of a
        message the cache may not show yet).
        """
        use_cache = self.settings.cache_pages and cached
        group = self.tail_group(chat_id)
        token = None
        if use_cache:
            version = await self.chat_version(chat_id)
            if version is None:
                raise chat_not_found()
            full_key = self.full_page_key(chat_id, after, limit, version)
            cached = await self._local_pages.get(full_key)
            if cached is not None:
                return cached
            cached = await self.cache.group_get(group, self.tail_field(after, limit, version))
            if cached is None:
                cached = await self.cache.get(full_key)
                if cached is not None and len(cached) <= self._local_page_bytes:
                    await self._local_pages.set(full_key, cached)
            if cached is not None:
                return cached
            token = await self.cache.group_token(group)  # before the read: a racing post wins
        max_bytes = self.settings.page_bytes
        rows = await self.db.fetchall(PAGE, {"chat_id": chat_id, "after": after, "limit": limit,
                                             "max_bytes": max_bytes, "overhead": MESSAGE_OVERHEAD})
        if not rows:
            raise chat_not_found()
        if after > rows[0]["last_seq"]:
            raise bad_cursor()
        seen = rows[0]["version"]  # the version of this very snapshot: what the page is cached under
        rows = [row for row in rows if row["id"] is not None]
        body, cut = encode_page(chat_id, after, rows, max_bytes)
        # a page cut by its bytes is complete too: no later message can ever enter it
        # (trailing deleted messages do not count: a new message may still enter the page after them)
        complete = cut or len(rows) == limit or (rows and rows[0]["taken"] > len(rows))
        if use_cache and len(body) <= self.settings.page_max_bytes:
            if complete:
                full_key = self.full_page_key(chat_id, after, limit, seen)
                await self.cache.set(full_key, body, self.settings.page_ttl)
                if len(body) <= self._local_page_bytes:
                    await self._local_pages.set(full_key, body)
            elif self.cache.shared and token is not None:
                await self.cache.group_set(group, self.tail_field(after, limit, seen), body, token,
                                           self.settings.tail_page_ttl)
        return body
