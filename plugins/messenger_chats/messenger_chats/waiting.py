"""Long-poll: a read of an empty page held until a message after it is committed, in any process.

The process follows the chats' ``post`` events (:mod:`.events`) on the core's ``LISTEN`` connection.
A held read takes a watch of its chat *before* it looks at the chat again, so no event can slip
between the look and the wait.  The waiters of one chat are woken together by one event and share one
page read per ``(after, limit)`` (:class:`~messenger_core.SharedReads`), from PostgreSQL: the post
invalidated the chat's cached tail, so the cache would miss (or, while the poster's invalidation is
still on its way, show the page from before it); see bench/README.md, "Fan-out".  A client that asks
again from the ``next.iterator`` it was given, with nothing newer announced, waits without any read
(:meth:`PostWaits.empty_page`); so does one that asks again from where it was after its wait ran out,
once a read from PostgreSQL found nothing there (:meth:`PostWaits.page`).  Waiting holds no database
connection.  After the ``LISTEN``
connection was re-established (events may have been missed) every
waiter reads again; at shutdown every waiter answers its empty page at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from messenger_core import SharedReads, Waiters, metrics

from . import events
from .store import ChatStore, encode_page, is_empty_page

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

log = logging.getLogger("messenger.chats")

STATE_KEY = "messenger_chats.waits"
MAX_LATEST = 100_000  # chats whose newest seq this process remembers (forgotten all at once past it)
HELD = metrics.gauge("messenger_longpolls_held", "Long-polls (GET .../messages?wait=) held right now")


class PostWaits:
    """The held long-polls of one process (``runtime.state["messenger_chats.waits"]``).

    ``held`` counts the requests held right now (and the ``messenger_longpolls_held`` gauge with it).
    """

    def __init__(self, runtime: "Runtime", store: ChatStore) -> None:
        self.runtime = runtime
        self.store = store
        self.waiters = Waiters()
        self.reads: SharedReads[bytes] = SharedReads()
        self.latest: dict[uuid.UUID, int] = {}  # newest seq known to be committed, per chat (see empty_page)
        self.epoch = 0  # moves on at every resync
        self.held = 0
        self._empty: dict[tuple[uuid.UUID, int], bytes] = {}  # encoded empty pages, by chat and position
        runtime.pubsub.subscribe(events.CHANNEL, self._notified)
        runtime.pubsub.on_resync(self._resync)
        runtime.on_drain(self.waiters.wake_all)

    def _notified(self, payload: str) -> None:
        event = events.parse(payload)
        if event is None or event["k"] != "post":
            return
        try:
            chat, seq = uuid.UUID(event["c"]), int(event["s"])
        except (KeyError, TypeError, ValueError):
            return
        self._newest(chat, seq)
        self.waiters.wake(chat)

    def _newest(self, chat: uuid.UUID, seq: int) -> None:
        if seq > self.latest.get(chat, -1):
            if len(self.latest) >= MAX_LATEST:
                self.latest.clear()
            self.latest[chat] = seq

    def empty_page(self, chat: uuid.UUID, after: int) -> bytes | None:
        """The empty page after ``after`` when this process knows, without a read, that nothing follows it.

        It knows when the newest message it knows of in ``chat`` is at ``after`` itself and ``LISTEN`` is
        live: a message after it has its event still to come, and that event wakes the wait.  It knows of
        a message from its post's event, and of "nothing after ``after``" from a read of PostgreSQL that
        began and ended with ``LISTEN`` live and no resync between (:meth:`_read`): every message committed
        after that read's snapshot has its event still to come, or already moved the position on.  A
        client that long-polls again from each answer's ``next.iterator``, or from where it was after its
        wait ran out, is in that case every time, so it asks neither the cache nor PostgreSQL again before
        it waits.  None: read.
        """
        if not self.runtime.pubsub.live or self.latest.get(chat) != after:
            return None
        body = self._empty.get((chat, after))
        if body is None:
            if len(self._empty) >= MAX_LATEST:
                self._empty.clear()
            body = self._empty[(chat, after)] = encode_page(chat, after, [])[0]
        return body

    def _resync(self) -> None:
        self.latest.clear()
        self.epoch += 1
        self.waiters.wake_all()

    async def page(self, chat: uuid.UUID, after: int, limit: int) -> bytes:
        """The page a long-poll answers at once, or waits on when it is empty (unless :meth:`empty_page`).

        When a post after ``after`` is known and the page is the chat's tail, the post made the cached tail
        stale: PostgreSQL at once, shared.  Otherwise the cache, as any read; an empty page from it is read
        again from PostgreSQL, so that the next poll from there (its wait ran out) waits without a read.
        """
        newest = self.latest.get(chat)
        if newest is not None and after < newest <= after + limit:
            return await self._read(chat, after, limit)
        body = await self.store.page(chat, after, limit)
        if is_empty_page(body):
            return await self._read(chat, after, limit)
        return body

    async def _read(self, chat: uuid.UUID, after: int, limit: int) -> bytes:
        # PostgreSQL, not the cache: the post that woke us invalidated the chat's tail pages, so the cache
        # misses (four Redis round trips: tail, full page, token, then storing the page) unless another
        # process read it first, and even then it may still show the page from before the post.  Shared by
        # the waiters of one position since the same resync (one begun before a resync is not taken after).
        return await self.reads.read((chat, after, limit, self.epoch), lambda: self._load(chat, after, limit))

    async def _load(self, chat: uuid.UUID, after: int, limit: int) -> bytes:
        live, epoch = self.runtime.pubsub.live, self.epoch
        body = await self.store.page(chat, after, limit, cached=False)
        if is_empty_page(body) and live and self.runtime.pubsub.live and epoch == self.epoch:
            self._newest(chat, after)  # nothing after it was committed before this snapshot (see empty_page)
        return body

    async def wait_page(self, chat: uuid.UUID, after: int, limit: int, timeout: float, empty: bytes,
                        gone: asyncio.Future[None] | None = None) -> bytes:
        """The first non-empty page after ``after`` within ``timeout`` seconds, else ``empty``.

        ``empty`` is the page the caller already read; ``gone`` (the client hung up) ends the wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen, epoch = after, self.epoch
        self.held += 1
        HELD.inc()
        log.debug("long-poll held: chat %s after %d, up to %.0f s", chat.hex, after, timeout)
        try:
            while not self.runtime.draining.is_set() and not (gone is not None and gone.done()):
                with self.waiters.watch(chat) as watch:
                    newest = self.latest.get(chat, 0)
                    if newest > seen or epoch != self.epoch:
                        seen, epoch = max(seen, newest), self.epoch
                        body = await self._read(chat, after, limit)
                        if not is_empty_page(body):
                            return body
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0 or not await watch.wait(remaining, gone):
                        return empty
        finally:
            self.held -= 1
            HELD.dec()
        return empty


def held_polls(runtime: "Runtime") -> int:
    """Long-polls this process holds right now."""
    waits: PostWaits | None = runtime.state.get(STATE_KEY)
    return waits.held if waits is not None else 0


def waits_of(runtime: "Runtime", store: ChatStore) -> PostWaits:
    """The process's :class:`PostWaits` (made, and the ``LISTEN`` opened, on the first long-poll)."""
    waits: PostWaits | None = runtime.state.get(STATE_KEY)
    if waits is None:
        waits = runtime.state[STATE_KEY] = PostWaits(runtime, store)
    return waits
