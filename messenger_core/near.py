"""Near cache: a per-process copy of hot shared-cache groups, kept coherent over Redis pub/sub.

With ``CACHE_TYPE=redis`` every read of a cached group costs a Redis round trip.  A group that is read
far more often than it changes (a session: read by every request, ended once) may also be held in the
process, in a bounded LRU with a TTL, provided that every process learns at once when it goes stale:

* :meth:`NearCache.evict` invalidates the group in the shared cache (``Cache.invalidate``), drops the
  local copy, PUBLISHes the group's name on ``<CACHE_PREFIX>evictions``, sends one more command (a PING)
  and returns once that is answered.
* Each process that uses its near copy keeps one subscription to that channel (one connection of the
  runtime's Redis pool, read by a background task started on first use) and drops a group as soon as
  its name arrives.

Why a request sent after ``evict`` returned finds the old value in no process (what logout promises):

1. Redis runs commands one at a time.  PUBLISH appends the message to the output buffer of every
   subscribed connection; Redis writes the buffers it filled to their sockets before it reads further
   commands (with io-threads the main thread waits for that write pass).  The PING is sent only after
   the PUBLISH reply came back, so when it is answered the eviction is in every subscriber's socket:
   in its receive buffer on the same host, on the wire to it otherwise.
2. So the eviction reaches a process B before any request that a client sends after the evicting
   request's response.  Across a network that holds because the eviction left first over a path with
   fewer hops; a lost and retransmitted packet can still deliver it late (by the TCP retransmission
   timeout).
3. In B the reader task wakes one event-loop step after its socket becomes readable and drops the group
   without yielding again (redis-py parses a buffered message without awaiting).  Tornado needs at least
   two steps from reading a request to the handler's ``prepare()`` (the connection's coroutine, then the
   handler's own task), so the eviction is applied before the request is authenticated.
4. A read that was in flight when the eviction arrived cannot keep what it read: reads are registered per
   group (:meth:`NearCache.reading`) and an eviction marks them stale.  A read that starts later finds the
   group already invalidated in Redis, because ``evict`` invalidates before it publishes.

Local entries are trusted only while the subscription is live: its confirmation was read, its connection
was never re-established since, and a heartbeat PING sent at most two intervals ago (2 s) was answered.
When the connection breaks, reconnects or a heartbeat is late, the whole copy is dropped, the epoch moves
on (reads begun before can no longer keep anything) and every read goes to Redis until a new subscription
is confirmed.  The limits:

* A silent network partition (no reset, no FIN) or a subscriber that stopped reading: evictions sent
  after it began do not arrive, and the process trusts its copy until its heartbeat is two intervals
  late, so for up to 2 s.
* A process that cannot reach Redis when it evicts: the group is dropped from its own copy, and the
  invalidation and the message are redone, in that order, as soon as its subscription is back (or by its
  next ``evict``).  Until then, processes that still reach Redis keep the group, in Redis as in their
  near copies; the shared cache alone has the same gap.  ``NEAR_CACHE_TTL`` bounds it.  ``evict``
  returns False then, so a caller that must not report success (logout answers 503) can tell.

Only the Redis cache has a near layer; the memory cache is either already in-process (one worker) or not
shared (several workers), and then nothing may be cached per process at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .aio import Backoff
from .cache import Cache, Lru, RedisCache
from .health import Availability
from .instruments import cache_lookup
from .settings import Config

log = logging.getLogger("messenger.near")

HEARTBEAT = 1.0  # seconds between PINGs on the subscription; the copy is trusted for two of them
RETRY_FIRST = 0.05  # seconds before the first attempt to subscribe again, doubling up to RETRY_LAST
RETRY_LAST = 1.0
CHUNK = 500  # groups per message when redoing evictions missed during an outage
MAX_MISSED = 100_000
SEPARATOR = "\n"  # between group names in one message (group names never contain it)


class SubscriptionLost(Exception):
    """The evictions channel can no longer be trusted (a late heartbeat, a reconnection)."""


class Read:
    """One read of a group from the shared cache (or from its source) whose result may be kept near.

    Use it as a context manager around the read; :meth:`keep` stores the value only if no eviction of
    the group arrived and the subscription stayed live since the read began.
    """

    __slots__ = ("near", "key", "epoch", "stale")

    def __init__(self, near: "NearCache", key: str, epoch: int | None) -> None:
        self.near = near
        self.key = key
        self.epoch = epoch  # None: begun while the channel was not live, never kept
        self.stale = False

    def keep(self, value: Any, ttl: float) -> bool:
        """Hold ``value`` (immutable) for at most ``ttl`` seconds; False when the read may be stale."""
        near = self.near
        if self.stale or self.epoch is None or self.epoch != near.epoch or ttl <= 0 or not near.live:
            return False
        near.store(self.key, value, ttl)
        return True

    def __enter__(self) -> "Read":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.epoch is not None:
            self.near.finish(self)


class NearCache:
    """A bounded per-process LRU of shared-cache groups, coherent through the evictions channel.

    ``get`` answers from the process (None unless the channel is live); a miss is read from the shared
    cache inside ``with near.reading(group) as read:`` and kept with ``read.keep(value, ttl)``;
    ``await near.evict(group)`` replaces ``cache.invalidate(group)`` for groups kept near.
    """

    def __init__(self, cache: RedisCache, client: aioredis.Redis, channel: str, max_items: int, ttl: float,
                 heartbeat: float = HEARTBEAT) -> None:
        self.cache = cache
        self.client = client
        self.channel = channel
        self.max_items = max_items
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.state = Availability(f"near cache: channel {channel}", log, down="lost")
        self.epoch = 0  # moves on whenever the subscription is lost
        self._data = Lru(max_items)
        self._reads: dict[str, list[Read]] = {}
        self._missed: set[str] = set()  # evictions that could not reach Redis, redone when it is back
        self._subscribed = False
        self._answered = -math.inf  # when the newest answered probe (SUBSCRIBE or PING) was sent
        self._probe: tuple[bytes | None, float] | None = None  # the unanswered one: (PING payload, sent)
        self._pings = 0
        self._connection: Any = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def live(self) -> bool:
        """Whether local entries may be trusted now: subscribed and a recent heartbeat answered."""
        return self._subscribed and time.monotonic() - self._answered <= 2 * self.heartbeat

    def __len__(self) -> int:
        return len(self._data)

    # ---- reading ---------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value held for ``key``, or None (also whenever the channel is not live)."""
        if self._task is None:
            self.start()
        if not self.live:
            return None
        found = self._data.get(key)
        cache_lookup("near", key, found is not None)
        return found

    def reading(self, key: str) -> Read:
        """Register a read of ``key`` that is about to start (see :class:`Read`)."""
        if not self.live:
            return Read(self, key, None)
        read = Read(self, key, self.epoch)
        self._reads.setdefault(key, []).append(read)
        return read

    def finish(self, read: Read) -> None:
        """Forget a read once it is over."""
        reads = self._reads.get(read.key)
        if reads is not None:
            reads.remove(read)
            if not reads:
                del self._reads[read.key]

    def store(self, key: str, value: Any, ttl: float) -> None:
        """Hold a value (``Read.keep`` decides whether it may be)."""
        self._data.put(key, value, min(ttl, self.ttl))

    def forget(self, key: str) -> None:
        """Drop ``key`` here and make the reads of it in flight stale."""
        self._data.pop(key)
        for read in self._reads.get(key, ()):
            read.stale = True

    # ---- evicting --------------------------------------------------------------------------------

    async def evict(self, key: str) -> bool:
        """Make ``key`` stale in the shared cache and in every process's copy; returns once all were told.

        False when Redis could not be reached: the eviction is then redone once it can.
        """
        if self._missed:
            await self._replay()
        if await self._evict_everywhere([key]):
            return True
        self._remember([key])
        return False

    async def _evict_everywhere(self, keys: list[str]) -> bool:
        await self.cache.invalidate(*keys)
        for key in keys:
            self.forget(key)
        if not self.cache.state.available:
            return False  # publishing now would let others read the group back from Redis before it goes
        try:
            await self.client.publish(self.channel, SEPARATOR.join(keys))
            await self.client.ping()  # answered once Redis has written the message to every subscriber
        except (RedisError, OSError) as exc:
            self.cache.state.failed(exc)
            return False
        return True

    def _remember(self, keys: list[str]) -> None:
        room = max(0, MAX_MISSED - len(self._missed))
        self._missed.update(keys[:room])
        if room < len(keys):
            log.error("near cache: too many evictions missed during a redis outage; %d group(s) may stay "
                      "stale in other processes until they expire", len(keys) - room)

    async def _replay(self) -> bool:
        """Redo the evictions that could not reach Redis; False while it is still away."""
        missed = list(self._missed)
        self._missed.difference_update(missed)
        for start in range(0, len(missed), CHUNK):
            if not await self._evict_everywhere(missed[start:start + CHUNK]):
                self._remember(missed[start:])
                return False
        if missed:
            log.info("near cache: redid %d eviction(s) missed while redis was away", len(missed))
        return True

    # ---- the subscription ------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the channel (``get`` does it on first use)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._follow_forever())

    async def close(self) -> None:
        """Stop following the channel and drop the copy."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._lose()

    def _lose(self) -> bool:
        """Stop trusting the copy: drop it, move the epoch on; True when it was subscribed."""
        was = self._subscribed
        self._subscribed = False
        self._answered = -math.inf
        self._probe = None
        self._data.clear()
        self.epoch += 1
        return was

    def _reconnected(self, connection: Any) -> None:
        """A connect callback: a re-established connection may have missed evictions."""
        if connection is self._connection:
            self._lose()
            self._connection = None

    async def _follow_forever(self) -> None:
        backoff = Backoff(RETRY_FIRST, RETRY_LAST)
        while not self._closed:  # a cancel that a client library turned into an error still ends it
            pubsub = self.client.pubsub()
            try:
                await self._follow(pubsub)
            except (RedisError, OSError, SubscriptionLost) as exc:
                if self._subscribed:
                    backoff.reset()
                self.state.failed(exc)
            finally:
                self._lose()
                if pubsub.connection is not None:
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                self._connection = None
                await pubsub.aclose()
            await asyncio.sleep(backoff.next())

    async def _follow(self, pubsub: PubSub) -> None:
        """Subscribe, redo missed evictions, then apply messages and heartbeats until something fails."""
        self._probe = (None, time.monotonic())
        await pubsub.subscribe(self.channel)
        self._connection = pubsub.connection
        pubsub.connection.register_connect_callback(self._reconnected)
        if self._missed and not await self._replay():
            raise SubscriptionLost("missed evictions could not be redone")
        while True:
            if self._connection is None:
                raise SubscriptionLost("the connection was re-established")
            now = time.monotonic()
            if self._probe is None and now >= self._answered + self.heartbeat:
                self._pings += 1
                payload = str(self._pings).encode()
                self._probe = (payload, now)
                await pubsub.ping(payload)
            if self._probe is not None:
                wait = self._probe[1] + 2 * self.heartbeat - now
            else:
                wait = self._answered + self.heartbeat - now
            message = await pubsub.get_message(timeout=max(0.0, wait))
            if message is not None:
                self._apply(message)
            elif self._probe is not None and time.monotonic() - self._probe[1] > 2 * self.heartbeat:
                raise SubscriptionLost(f"no answer to a heartbeat within {2 * self.heartbeat:.1f}s")

    def _apply(self, message: dict[str, Any]) -> None:
        """Act on one message of the subscription (synchronously: see the module docstring, point 3)."""
        kind, data = message["type"], message["data"]
        if kind == "message":
            for key in bytes(data).decode(errors="replace").split(SEPARATOR):
                self.forget(key)
        elif kind == "pong" or (kind == "subscribe" and not self._subscribed):
            if self._probe is not None and (kind == "subscribe" or data == self._probe[0]):
                self._answered = self._probe[1]
                self._probe = None
                if kind == "subscribe":
                    self._subscribed = True
                    self.state.succeeded()
        else:
            raise SubscriptionLost(f"unexpected {kind} message")


def make_near_cache(config: Config, cache: Cache, client: aioredis.Redis | None) -> NearCache | None:
    """The near layer of a Redis cache, or None (memory cache, ``NEAR_CACHE_MAX_ITEMS=0``, a pool of one)."""
    if not isinstance(cache, RedisCache) or client is None or config.near_cache_max_items <= 0:
        return None
    if config.redis_pool_size < 2:
        log.warning("near cache off: its subscription would hold the only connection of REDIS_POOL_SIZE=1")
        return None
    return NearCache(cache, client, config.cache_prefix + "evictions", config.near_cache_max_items,
                     config.near_cache_ttl)
