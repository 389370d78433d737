"""Cross-process wake-ups over PostgreSQL ``LISTEN``/``NOTIFY``, and in-process waiters keyed by anything.

:class:`PubSub` holds one connection per process, outside the pool, that ``LISTEN``\\ s on every channel a
plugin subscribed to, and calls the channel's callbacks with each payload, synchronously, in the order
PostgreSQL delivered them.  A writer sends ``SELECT pg_notify(channel, payload)`` inside its own transaction,
so every process of every instance learns of the write once it is committed, in commit order, and never of
a write that was rolled back.  Nothing but PostgreSQL is needed.

Notifications sent while the connection is down are lost (PostgreSQL queues them only for listening
sessions), so after every (re)connection, once ``LISTEN`` is in place again, the resync callbacks run:
whoever waits for a notification must then re-read what it waits for from PostgreSQL.  The connection is
checked with a ``SELECT 1`` whenever no notification came for ``HEARTBEAT`` seconds, and reopened on the core's
:class:`~messenger_core.aio.Backoff` when it fails.

:class:`Waiters` is the in-process half: coroutines wait on a key (a chat, say) and ``wake(key)`` resolves
all of them at once with one future, so the waiters of one key are woken together and may share the read
that follows (:class:`SharedReads`).  Waiting costs a future, no database connection and no polling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql

from .aio import Backoff
from .health import Availability

log = logging.getLogger("messenger.pubsub")

#: The channel on which a session that ended early (a logout) is announced; the payload is its 32-hex id.
#: The auth plugin also sends ``epoch:<n>`` there (its sessions epoch moved on); a listener that only
#: cares about sessions ignores a payload that is not a 32-hex id.
SESSIONS_CHANNEL = "messenger_sessions"
HEARTBEAT = 5.0  # seconds without a notification before the connection is checked with SELECT 1
RETRY_FIRST = 0.05  # seconds before the first reconnection, doubling up to RETRY_LAST
RETRY_LAST = 2.0
CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


class PubSub:
    """The process's ``LISTEN`` connection: callbacks per channel, resync callbacks after a reconnection.

    ``subscribe`` before or after ``start``; the connection is opened on the first subscription.  A
    callback must not block; it runs on the event loop as the notification is read.
    """

    def __init__(self, conninfo: str, heartbeat: float = HEARTBEAT) -> None:
        self.conninfo = conninfo
        self.heartbeat = heartbeat
        self.health = Availability("pubsub: the LISTEN connection", log, down="lost")
        self.live = False  # LISTEN is in place on every channel subscribed so far
        self.connections = 0  # how many times LISTEN was established (tests and metrics read it)
        self.received = 0
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._resync: list[Callable[[], None]] = []
        self._listening: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for every notification on ``channel`` (opens the connection)."""
        self._callbacks.setdefault(channel, []).append(callback)
        if self._task is not None and channel not in self._listening:
            self._task.cancel()  # listen again, on every channel (the resync covers the gap)
            self._task = None
        self.start()

    def unsubscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Stop calling ``callback`` (the channel stays listened to)."""
        callbacks = self._callbacks.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every (re)connection: notifications may have been missed before it."""
        self._resync.append(callback)

    def start(self) -> None:
        """Start listening (``subscribe`` does it); needs a running event loop."""
        if self._task is None and not self._closed and self._callbacks:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _listen_forever(self) -> None:
        backoff = Backoff(RETRY_FIRST, RETRY_LAST)
        while not self._closed:
            try:
                await self._listen()
            except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                if self.live:  # it was up: the first retry is quick again
                    backoff.reset()
                self.health.failed(exc)
            finally:
                self._went_down()
            await asyncio.sleep(backoff.next())

    def _went_down(self) -> None:
        self.live = False
        self._listening.clear()

    async def _listen(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, keepalives=1, keepalives_idle=10, keepalives_interval=5,
                keepalives_count=2)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                for channel in list(self._callbacks):
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._listening.add(channel)
            self.live = True
            self.connections += 1
            self.health.succeeded()
            self._run_resync()
            while True:
                got = False
                async for note in conn.notifies(timeout=self.heartbeat):
                    got = True
                    self._dispatch(note.channel, note.payload)
                if not got:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await conn.execute("SELECT 1")
        finally:
            try:
                await conn.close()
            except (psycopg.Error, OSError):  # pragma: no cover - closing a broken connection
                pass

    def _dispatch(self, channel: str, payload: str) -> None:
        self.received += 1
        for callback in list(self._callbacks.get(channel, ())):
            try:
                callback(payload)
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("pubsub: a callback of channel %s failed", channel)

    def _run_resync(self) -> None:
        for callback in list(self._resync):
            try:
                callback()
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("pubsub: a resync callback failed")


class Watch:
    """Interest in one key of :class:`Waiters`, taken *before* reading the state it waits to change."""

    __slots__ = ("waiters", "key", "future")

    def __init__(self, waiters: "Waiters", key: Hashable, future: asyncio.Future[None]) -> None:
        self.waiters = waiters
        self.key = key
        self.future = future

    async def wait(self, timeout: float, also: asyncio.Future[Any] | None = None) -> bool:
        """True once the key was woken since this watch was taken; False after ``timeout`` seconds.

        ``also`` (say, "the client hung up") ends the wait early too, returning False.
        """
        if not self.future.done():
            await asyncio.wait((self.future,) if also is None else (self.future, also),
                               timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
        return self.future.done()

    def close(self) -> None:
        """Drop the interest (the key's future goes once no watch of it is left)."""
        self.waiters.release(self)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Waiters:
    """Coroutines waiting on keys; ``wake(key)`` resolves every watch of the key at once."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, list[Any]] = {}  # key -> [future, watches]

    def watch(self, key: Hashable) -> Watch:
        """A watch of ``key``: its ``wait`` returns at the next ``wake(key)`` (or ``wake_all``)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = [asyncio.get_running_loop().create_future(), 0]
        slot[1] += 1
        return Watch(self, key, slot[0])

    def release(self, watch: Watch) -> None:
        """Forget a watch."""
        slot = self._slots.get(watch.key)
        if slot is not None and slot[0] is watch.future:
            slot[1] -= 1
            if slot[1] <= 0:
                del self._slots[watch.key]

    def wake(self, key: Hashable) -> bool:
        """Wake every watch of ``key``; False when nobody watched it."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        if not slot[0].done():
            slot[0].set_result(None)
        return True

    def wake_all(self) -> None:
        """Wake every watch of every key (after a resync, or at shutdown)."""
        slots, self._slots = self._slots, {}
        for future, _ in slots.values():
            if not future.done():
                future.set_result(None)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots


class SharedReads(Generic[T]):
    """Concurrent reads of one key share one call: the first caller runs it, the others await its result."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[T]] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``await load()``, or the result of the same key's call already running."""
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            if self._running.get(key) is future:
                del self._running[key]
        future.set_result(value)
        return value
