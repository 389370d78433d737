"""Counters behind the limits: an exact sliding window and fixed per-period attempt counters.

Two backends with one interface: :class:`MemoryBackend` (per process, bounded number of keys) and
:class:`RedisBackend` (shared by every process and instance; one Lua script per call, so a check
is one round trip and atomic).  A call that cannot reach Redis returns ``None``: the caller
decides what "unknown" means (the request limiter lets the request through).
"""

from __future__ import annotations

import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from messenger_core import Availability

log = logging.getLogger("messenger.throttle")

#: Memory backend bound: least recently used keys are forgotten beyond this many (worst case, a flood
#: of distinct clients, about THROTTLE_RPS timestamps each).  Expired keys go long before that.
MAX_MEMORY_KEYS = 20_000
#: Expired keys the memory backend drops per call, from the least recently used end.
SWEEP_PER_CALL = 2
#: After a failed Redis call, skip Redis this long (fail open at once instead of waiting on timeouts).
REDIS_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Decision:
    """The outcome of one counted attempt."""

    allowed: bool
    #: Attempts left in the current window after this one (0 when refused).
    remaining: int
    #: Seconds until an attempt can pass again (0.0 when allowed).
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class Backend(ABC):
    """Where the counters live."""

    #: True when every process of the service sees the same counters.
    shared = False

    @abstractmethod
    async def hit(self, key: str, limit: int, window: float) -> Decision | None:
        """Count one request for ``key`` unless ``limit`` were passed in the sliding ``window`` (seconds).

        A refused request is not counted.  None when the backend cannot answer.
        """

    @abstractmethod
    async def attempt(self, limits: Sequence[tuple[str, int]], period: int) -> Decision | None:
        """Count one attempt against every ``(key, limit)``, for the current calendar ``period`` (seconds).

        Refused (and nothing counted) when any key already had its ``limit`` attempts in this period;
        ``retry_after`` is then the time left in the period.  ``remaining`` is the smallest number of
        attempts left over the keys.  None when the backend cannot answer.
        """

    @abstractmethod
    async def release(self, keys: Sequence[str], period: int) -> None:
        """Take back one attempt of each key in the current period (never below zero): an attempt
        counted in advance that turned out not to count (a successful login)."""


class MemoryBackend(Backend):
    """Per-process counters: a deque of timestamps per key, LRU-bounded to ``max_keys`` keys."""

    def __init__(self, max_keys: int = MAX_MEMORY_KEYS, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self.wall_clock = wall_clock
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()
        self._periods: OrderedDict[str, tuple[int, int]] = OrderedDict()  # key -> (period index, count)

    def __len__(self) -> int:
        return len(self._windows) + len(self._periods)

    def _bound(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_keys:
            table.popitem(last=False)

    async def hit(self, key: str, limit: int, window: float) -> Decision:
        now = self.clock()
        horizon = now - window
        self._sweep_windows(horizon)  # before the lookup: it may drop this very key, when it is expired
        stamps = self._windows.get(key)
        if stamps is None:
            stamps = self._windows[key] = deque()
            self._bound(self._windows)
        else:
            self._windows.move_to_end(key)
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if len(stamps) >= limit:
            return Decision(False, 0, stamps[-limit] - horizon)
        stamps.append(now)
        return Decision(True, limit - len(stamps))

    def _sweep_windows(self, horizon: float) -> None:
        """Forget a few least recently used keys whose every request has left the window."""
        for _ in range(SWEEP_PER_CALL):
            oldest = next(iter(self._windows.items()), None)
            if oldest is None or (oldest[1] and oldest[1][-1] > horizon):
                return
            del self._windows[oldest[0]]

    async def attempt(self, limits: Sequence[tuple[str, int]], period: int) -> Decision:
        now = self.wall_clock()
        index = int(now // period)
        left = (index + 1) * period - now
        counts = []
        for key, _ in limits:
            seen_index, seen = self._periods.get(key, (index, 0))
            counts.append(seen if seen_index == index else 0)
        if any(seen >= limit for seen, (_, limit) in zip(counts, limits)):
            return Decision(False, 0, left)
        for (key, _), seen in zip(limits, counts):
            self._periods[key] = (index, seen + 1)
            self._periods.move_to_end(key)
        self._bound(self._periods)
        for _ in range(SWEEP_PER_CALL):  # forget a few counters of past periods
            oldest = next(iter(self._periods.items()), None)
            if oldest is None or oldest[1][0] == index:
                break
            del self._periods[oldest[0]]
        return Decision(True, min((limit - 1 - seen for seen, (_, limit) in zip(counts, limits)), default=0))

    async def release(self, keys: Sequence[str], period: int) -> None:
        index = int(self.wall_clock() // period)
        for key in keys:
            seen_index, seen = self._periods.get(key, (index, 0))
            if seen_index == index and seen > 0:
                self._periods[key] = (index, seen - 1)


# KEYS[1]: the client's sorted set of request times (microseconds, Redis clock).
# ARGV: limit, window in microseconds, a member suffix unique to this call.
# Returns {allowed 1/0, remaining, microseconds until a slot frees}.
_SLIDING_WINDOW = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2] .. '.' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {1, limit - used - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
return {0, 0, math.max(1, math.ceil(tonumber(oldest[2]) + window - now))}
"""

# KEYS: one counter per dimension (user name and client, client); each expires at the end of the period,
# and its name carries the period's index, so a counter of a past period is never read.
# ARGV: period in seconds, then the limit of each key.  Returns {allowed 1/0, remaining, seconds left}.
_FIXED_PERIOD = """
local period = tonumber(ARGV[1])
local now = tonumber(redis.call('TIME')[1])
local left = period - (now % period)
local suffix = ':' .. math.floor(now / period)
local fewest = nil
for i = 1, #KEYS do
  local limit = tonumber(ARGV[i + 1])
  local seen = tonumber(redis.call('GET', KEYS[i] .. suffix) or '0')
  if seen >= limit then return {0, 0, left} end
  if fewest == nil or limit - seen - 1 < fewest then fewest = limit - seen - 1 end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i] .. suffix) == 1 then redis.call('EXPIRE', KEYS[i] .. suffix, left + 1) end
end
return {1, fewest or 0, 0}
"""

# KEYS: counters to take one back from in the current period (not below zero).  ARGV: period.
_RELEASE = """
local period = tonumber(ARGV[1])
local suffix = ':' .. math.floor(tonumber(redis.call('TIME')[1]) / period)
for i = 1, #KEYS do
  local seen = tonumber(redis.call('GET', KEYS[i] .. suffix) or '0')
  if seen > 0 then redis.call('DECR', KEYS[i] .. suffix) end
end
return {1}
"""


class RedisBackend(Backend):
    """Counters in Redis under ``prefix``: atomic Lua scripts timed by the Redis clock.

    Every key has a TTL.  Errors are caught: one warning when Redis goes away, one line when it is
    back, and for ``REDIS_RETRY_AFTER`` seconds after a failure calls answer None at once.
    """

    shared = True

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.state = Availability("throttle: redis", log)
        self._sliding = client.register_script(_SLIDING_WINDOW)
        self._fixed = client.register_script(_FIXED_PERIOD)
        self._release = client.register_script(_RELEASE)
        self._members = count()
        self._tag = f"{os.getpid():x}.{os.urandom(4).hex()}"
        self._skip_until = 0.0

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> list[int] | None:
        if time.monotonic() < self._skip_until:
            return None
        try:
            result = await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.state.failed(exc)
            self._skip_until = time.monotonic() + REDIS_RETRY_AFTER
            return None
        self.state.succeeded()
        return [int(value) for value in result]

    async def hit(self, key: str, limit: int, window: float) -> Decision | None:
        member = f"{self._tag}.{next(self._members)}"
        result = await self._run(self._sliding, [self.prefix + key], [limit, int(window * 1_000_000), member])
        if result is None:
            return None
        allowed, remaining, wait_us = result
        return Decision(bool(allowed), remaining, wait_us / 1_000_000)

    async def attempt(self, limits: Sequence[tuple[str, int]], period: int) -> Decision | None:
        result = await self._run(self._fixed, [self.prefix + key for key, _ in limits],
                                 [period, *(limit for _, limit in limits)])
        if result is None:
            return None
        allowed, remaining, left = result
        return Decision(bool(allowed), remaining, float(left))

    async def release(self, keys: Sequence[str], period: int) -> None:
        await self._run(self._release, [self.prefix + key for key in keys], [period])
