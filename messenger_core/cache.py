"""Cache: one async interface, two backends (memory per process, Redis shared).

Besides plain keys the cache has *groups*: many fields that expire together and are made stale
together by one ``invalidate(group)``, no key scans.  A plugin that caches many views of one object
(say every page of one chat) keeps them in one group.  Writes into a group are guarded by a
generation token taken *before* reading the source of truth, so a reader that raced with an
invalidation can never put a stale entry back.  Redis being unreachable degrades every call to a
miss / no-op with a log line.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .health import Availability
from .instruments import cache_lookup
from .settings import Config

log = logging.getLogger("messenger.cache")


class Cache(ABC):
    """The cache interface the core gives to plugins (``runtime.cache``)."""

    #: True when every process of the service sees the same entries (Redis, or one process).
    shared: bool = False

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None on a miss (or when the backend is down)."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store a value for ``ttl`` seconds (default ``CACHE_TTL``)."""

    @abstractmethod
    async def delete(self, *keys: str) -> None:
        """Forget keys or whole groups."""

    @abstractmethod
    async def group_get(self, group: str, field: str) -> bytes | None:
        """One field of a group, or None."""

    @abstractmethod
    async def group_token(self, group: str) -> int | None:
        """The group's generation; take it before reading the data you are going to cache.

        None when the backend is down (then do not cache).
        """

    @abstractmethod
    async def group_set(self, group: str, field: str, value: bytes, token: int,
                        ttl: float | None = None) -> None:
        """Store one field, unless the group was invalidated since ``token`` was taken."""

    @abstractmethod
    async def invalidate(self, *groups: str) -> bool:
        """Make every field of the groups stale, in every process that shares this cache.

        False when the backend could not be reached: the invalidation is then redone before the
        next command that gets through, but until then other processes may still read the groups.
        """

    async def close(self) -> None:
        """Release connections."""


class Lru:
    """A bounded mapping whose entries expire: the least recently used go first once it is full."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        """The live value of ``key`` (now the most recently used), or None."""
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: Any, ttl: float) -> None:
        """Hold ``value`` for ``ttl`` seconds, dropping the least recently used past ``max_items``."""
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        """Forget ``key``."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class MemoryCache(Cache):
    """A per-process LRU with a TTL per entry and a bound on the number of entries."""

    def __init__(self, max_items: int, ttl: float, shared: bool = False) -> None:
        self.max_items = max_items
        self.ttl = ttl
        self.shared = shared
        self._data = Lru(max_items)
        # generations outlive their group's entries (a racing reader must still be refused) but are
        # bounded too: a forgotten generation reads as 0, which refuses any writer holding a token
        self._generations: OrderedDict[str, int] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        value = self._data.get(key)
        found = value if isinstance(value, bytes) else None
        cache_lookup("memory", key, found is not None)
        return found

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._data.put(key, value, ttl or self.ttl)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key)

    async def group_get(self, group: str, field: str) -> bytes | None:
        fields = self._data.get(group)
        found = fields.get(field) if isinstance(fields, dict) else None
        cache_lookup("memory", group, found is not None)
        return found

    async def group_token(self, group: str) -> int | None:
        return self._generations.get(group, 0)

    async def group_set(self, group: str, field: str, value: bytes, token: int,
                        ttl: float | None = None) -> None:
        if self._generations.get(group, 0) != token:
            return
        fields = self._data.get(group)
        if not isinstance(fields, dict):
            fields = {}
        fields[field] = value
        self._data.put(group, fields, ttl or self.ttl)

    async def invalidate(self, *groups: str) -> bool:
        for group in groups:
            self._generations[group] = self._generations.get(group, 0) + 1
            self._generations.move_to_end(group)
            self._data.pop(group)
        while len(self._generations) > self.max_items:
            self._generations.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._data)


def redis_client(config: Config) -> aioredis.Redis:
    """A redis.asyncio client with short timeouts, so an outage answers fast instead of hanging.

    Its pool blocks (up to the socket timeout) when ``REDIS_POOL_SIZE`` connections are busy,
    instead of failing with "Too many connections", which callers would take for an outage.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        config.redis_url,
        max_connections=config.redis_pool_size,
        timeout=1.0,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=15,
    )
    # no automatic retries: during an outage every call should fail within its timeout, once
    return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


GEN_SUFFIX = ":gen"
GEN_TTL_MS = 7 * 24 * 3600 * 1000
MAX_MISSED = 100_000
REPLAY_CHUNK = 500  # groups per script call when replaying missed invalidations
# KEYS: group hash, generation key; ARGV: token, field, value, ttl ms
_SET_IF_CURRENT = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# KEYS: (group hash, generation key) pairs; ARGV: generation ttl ms.  One script rather than a
# MULTI/EXEC pipeline: as atomic, and a third of the client CPU (redis-py builds and parses a pipeline
# in Python); several groups in one call cost one round trip.
_BUMP = """
for i = 1, #KEYS, 2 do
    redis.call('INCR', KEYS[i + 1])
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
    redis.call('DEL', KEYS[i])
end
return 1
"""


class RedisCache(Cache):
    """Redis backend: shared by every process; all keys carry ``CACHE_PREFIX``."""

    shared = True

    def __init__(self, client: aioredis.Redis, prefix: str, ttl: float, owns_client: bool = True) -> None:
        self.client = client
        self.owns_client = owns_client
        self.prefix = prefix
        self.ttl = ttl
        self.state = Availability("cache: redis", log)
        self._set_if_current = client.register_script(_SET_IF_CURRENT)
        self._bump_script = client.register_script(_BUMP)
        # invalidations that could not reach Redis: replayed as soon as it answers again, so an
        # entry that went stale during the outage (a logged-out session, an old page) dies then
        self._missed: set[str] = set()

    def _ttl_ms(self, ttl: float | None) -> int:
        return max(1, int((ttl or self.ttl) * 1000))

    async def _run(self, coro: Any) -> Any:
        if self._missed:  # before this command, so that it cannot read what went stale meanwhile
            await self._replay()
            if self._missed:
                coro.close()  # never awaited: Redis is still away
                return None
        try:
            result = await coro
        except (RedisError, OSError) as exc:
            self.state.failed(exc)
            return None
        self.state.succeeded()
        return result

    async def _replay(self) -> None:
        missed, self._missed = list(self._missed), set()
        for start in range(0, len(missed), REPLAY_CHUNK):
            try:
                await self._bump(*missed[start:start + REPLAY_CHUNK])
            except (RedisError, OSError) as exc:
                self.state.failed(exc)
                self._missed.update(missed[start:])  # still away: keep the rest for later
                return
        if missed:
            self.state.succeeded()
            log.info("cache: replayed %d invalidation(s) missed while redis was away", len(missed))

    async def get(self, key: str) -> bytes | None:
        found = await self._run(self.client.get(self.prefix + key))
        cache_lookup("redis", key, found is not None)
        return found

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._run(self.client.set(self.prefix + key, value, px=self._ttl_ms(ttl)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._run(self.client.delete(*(self.prefix + key for key in keys)))

    async def group_get(self, group: str, field: str) -> bytes | None:
        found = await self._run(self.client.hget(self.prefix + group, field))
        cache_lookup("redis", group, found is not None)
        return found

    async def group_token(self, group: str) -> int | None:
        if self._missed:
            await self._replay()
            if self._missed:
                return None
        try:
            raw = await self.client.get(self.prefix + group + GEN_SUFFIX)
        except (RedisError, OSError) as exc:
            self.state.failed(exc)
            return None
        self.state.succeeded()
        return int(raw or 0)

    async def group_set(self, group: str, field: str, value: bytes, token: int,
                        ttl: float | None = None) -> None:
        key = self.prefix + group
        await self._run(self._set_if_current(keys=[key, key + GEN_SUFFIX],
                                             args=[token, field, value, self._ttl_ms(ttl)]))

    async def _bump(self, *groups: str) -> None:
        keys = []
        for group in groups:
            keys += (self.prefix + group, self.prefix + group + GEN_SUFFIX)
        await self._bump_script(keys=keys, args=[GEN_TTL_MS])

    async def invalidate(self, *groups: str) -> bool:
        if not groups:
            return True
        if self._missed:
            await self._replay()
        try:
            await self._bump(*groups)
        except (RedisError, OSError) as exc:
            self.state.failed(exc)
            room = max(0, MAX_MISSED - len(self._missed))
            self._missed.update(groups[:room])
            if room < len(groups):
                log.error("cache: too many invalidations missed during a redis outage; %d group(s) may stay "
                          "stale until they expire", len(groups) - room)
            return False
        self.state.succeeded()
        return True

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()


def make_cache(config: Config, processes: int = 1, client: aioredis.Redis | None = None) -> Cache:
    """The backend ``CACHE_TYPE`` names; a memory cache is shared only in a one-process server.

    ``client`` is the process's Redis client (the runtime's); the cache then leaves closing it to
    its owner.
    """
    if config.cache_type == "redis":
        if client is None:
            return RedisCache(redis_client(config), config.cache_prefix, config.cache_ttl)
        return RedisCache(client, config.cache_prefix, config.cache_ttl, owns_client=False)
    return MemoryCache(config.cache_max_items, config.cache_ttl, shared=processes == 1)
