"""Where search tasks and their results live: one interface, two backends.

* :class:`RedisStore` when tasks go through RabbitMQ (``RMQ_URL`` set): the API process writes
  WAITING, ``messenger-consumer`` writes the rest, the API reads.  Every key starts with
  ``CACHE_PREFIX`` + ``search:``.  Each state change is one Lua script, so concurrent readers,
  consumers and redeliveries never see half a change.
* :class:`MemoryStore` for the embedded worker (no ``RMQ_URL``): the same rules in a dict.

A task is a record ``{status, owner, attempts, trimmed, total}`` plus the list of its results
(JSON objects, newest first).  Result position ``i`` (0-based, over the whole list) is what the
public iterator names; reading a page ``from=i`` forgets every result before ``i`` ("trimmed").
A finished task and its results expire ``SEARCH_TASK_TTL`` seconds after it finished; a task that
never finishes is forgotten after :data:`PENDING_TTL` so nothing leaks forever.  ``create`` also
bounds the tasks a quota (an account, or a client address) has outstanding: in Redis a set of its
unfinished task ids per quota, pruned of finished and vanished tasks whenever it is checked.  A worker that
finds no record for a queued task (Redis lost its data) recreates it from the message.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.exceptions import RedisError

from messenger_core import Availability, ServiceUnavailable

from .errors import bad_cursor, task_not_found

log = logging.getLogger("messenger.search.store")

WAITING, IN_PROCESS, SUCCESS, FAILED = "WAITING", "IN_PROCESS", "SUCCESS", "FAILED"
FINISHED = (SUCCESS, FAILED)
RECREATED = "RECREATED"  # only between the claim script and RedisStore.claim
PENDING_TTL = 7 * 24 * 3600  # seconds an unfinished task is kept (a queue outage may last long)
MEMORY_MAX_TASKS = 10000  # records one API process keeps in memory

T = TypeVar("T")


@dataclass(frozen=True)
class TaskInfo:
    """What a reader needs to know about a task: its status and who asked."""

    status: str
    owner: str


@dataclass(frozen=True)
class Claim:
    """What a worker got when it started a task: its status then, the run count, whether it was recreated."""

    status: str
    attempts: int
    recreated: bool = False


@dataclass(frozen=True)
class Page:
    """Results from position ``start`` on (raw JSON objects)."""

    start: int
    items: list[bytes]

    @property
    def next(self) -> int:
        """Position right after the last result of the page."""
        return self.start + len(self.items)


class SearchStore(ABC):
    """Tasks and results of the search plugin."""

    def __init__(self, task_ttl: float) -> None:
        self.task_ttl = task_ttl

    @abstractmethod
    async def create(self, task_id: str, owner: str, quota: str = "", limit: int = 0) -> bool:
        """Record a new WAITING task of ``owner``; True when recorded.

        With a ``limit``, the task counts against ``quota`` (who is bounded: an account or a client),
        and it is refused (False, nothing recorded) while ``limit`` tasks of that quota are still
        outstanding (WAITING or IN_PROCESS).
        """

    @abstractmethod
    async def discard(self, task_id: str) -> None:
        """Forget a task that could not be queued."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskInfo | None:
        """The task's status and owner, or None when unknown (or expired)."""

    @abstractmethod
    async def claim(self, task_id: str, owner: str) -> Claim:
        """A worker starts the task: count the run and set IN_PROCESS, unless it is finished.

        A record that is missing (Redis lost its data, or it expired) is recreated from the
        queued message, so a task accepted with 201 still ends with results.
        """

    @abstractmethod
    async def finish(self, task_id: str, results: list[bytes]) -> bool:
        """SUCCESS with ``results`` (newest first), expiring after the TTL; False if already finished."""

    @abstractmethod
    async def fail(self, task_id: str, reason: str) -> bool:
        """FAILED (the reason is kept for operators), expiring after the TTL; False if already finished."""

    @abstractmethod
    async def page(self, task_id: str, start: int | None, limit: int) -> Page:
        """Up to ``limit`` results from ``start`` (default: the first not yet acknowledged).

        Results before ``start`` are deleted.  Raises 400 ``bad-cursor`` for a position before the
        first kept result or after the last one, 404 ``task-not-found`` when the task is gone.
        """

    async def close(self) -> None:
        """Release resources."""


# ---- memory ----------------------------------------------------------------------------------

@dataclass
class _Record:
    status: str
    owner: str
    expires: float
    attempts: int = 0
    trimmed: int = 0
    reason: str = ""
    quota: str = ""
    results: list[bytes] = field(default_factory=list)


class MemoryStore(SearchStore):
    """One process's tasks, in a dict; expired records are swept as new ones arrive.

    At most ``max_tasks`` records are kept: past that, the oldest finished ones are forgotten first.
    """

    def __init__(self, task_ttl: float, max_tasks: int = MEMORY_MAX_TASKS) -> None:
        super().__init__(task_ttl)
        self.max_tasks = max_tasks
        self._tasks: dict[str, _Record] = {}
        self._outstanding: dict[str, set[str]] = {}  # quota -> its unfinished tasks

    def _forget(self, task_id: str, record: _Record) -> None:
        """The task no longer counts against its quota (it finished, or was forgotten)."""
        pending = self._outstanding.get(record.quota)
        if pending is not None:
            pending.discard(task_id)
            if not pending:
                del self._outstanding[record.quota]

    def _live(self, task_id: str) -> _Record | None:
        record = self._tasks.get(task_id)
        if record is not None and record.expires <= time.monotonic():
            del self._tasks[task_id]
            self._forget(task_id, record)
            return None
        return record

    def _sweep(self) -> None:
        now = time.monotonic()
        for task_id in [key for key, rec in self._tasks.items() if rec.expires <= now]:
            self._forget(task_id, self._tasks.pop(task_id))
        excess = len(self._tasks) + 1 - self.max_tasks
        if excess > 0:  # oldest first (dicts keep insertion order), finished ones before the others
            ordered = sorted(self._tasks, key=lambda key: self._tasks[key].status not in FINISHED)
            for task_id in ordered[:excess]:
                self._forget(task_id, self._tasks.pop(task_id))

    async def create(self, task_id: str, owner: str, quota: str = "", limit: int = 0) -> bool:
        self._sweep()
        if limit:
            pending = self._outstanding.setdefault(quota, set())
            if len(pending) >= limit:
                return False
            pending.add(task_id)
        self._tasks[task_id] = _Record(WAITING, owner, time.monotonic() + PENDING_TTL,
                                       quota=quota if limit else "")
        return True

    async def discard(self, task_id: str) -> None:
        record = self._tasks.pop(task_id, None)
        if record is not None:
            self._forget(task_id, record)

    async def get(self, task_id: str) -> TaskInfo | None:
        record = self._live(task_id)
        return None if record is None else TaskInfo(record.status, record.owner)

    async def claim(self, task_id: str, owner: str) -> Claim:
        record = self._live(task_id)
        if record is None:
            self._tasks[task_id] = _Record(IN_PROCESS, owner, time.monotonic() + PENDING_TTL, attempts=1)
            return Claim(IN_PROCESS, 1, recreated=True)
        if record.status in FINISHED:
            return Claim(record.status, record.attempts)
        record.attempts += 1
        record.status = IN_PROCESS
        return Claim(IN_PROCESS, record.attempts)

    def _end(self, task_id: str, status: str, results: list[bytes], reason: str) -> bool:
        record = self._live(task_id)
        if record is None or record.status in FINISHED:
            return False
        record.status, record.results, record.reason = status, list(results), reason
        record.trimmed = 0
        self._forget(task_id, record)
        record.expires = time.monotonic() + self.task_ttl
        return True

    async def finish(self, task_id: str, results: list[bytes]) -> bool:
        return self._end(task_id, SUCCESS, results, "")

    async def fail(self, task_id: str, reason: str) -> bool:
        return self._end(task_id, FAILED, [], reason)

    async def page(self, task_id: str, start: int | None, limit: int) -> Page:
        record = self._live(task_id)
        if record is None:
            raise task_not_found()
        total = record.trimmed + len(record.results)
        if start is None:
            start = record.trimmed
        if start < record.trimmed or start > total:
            raise bad_cursor()
        del record.results[:start - record.trimmed]
        record.trimmed = start
        return Page(start, record.results[:limit])


# ---- redis -----------------------------------------------------------------------------------

# KEYS: task hash, the quota's set of outstanding task ids.  ARGV: owner, created (unix s), pending ttl s,
# limit (0: none), task id, the key prefix of task hashes.  Returns 1 when created, 0 when over the limit.
# The set is pruned of tasks that finished or are gone (it never holds more than ``limit`` ids).
_CREATE = """
local limit = tonumber(ARGV[4])
if limit > 0 then
  local live = 0
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local status = redis.call('HGET', ARGV[6] .. id, 'status')
    if status == 'WAITING' or status == 'IN_PROCESS' then
      live = live + 1
    else
      redis.call('SREM', KEYS[2], id)
    end
  end
  if live >= limit then return 0 end
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', 'WAITING', 'owner', ARGV[1], 'attempts', 0, 'trimmed', 0, 'total', 0,
           'created', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: task hash.  ARGV: owner, pending ttl s.  Returns {status, attempts}.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'IN_PROCESS', 'owner', ARGV[1], 'attempts', 1, 'trimmed', 0,
             'total', 0, 'recreated', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {'RECREATED', 1}
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'SUCCESS' or status == 'FAILED' then
  return {status, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'IN_PROCESS')
return {'IN_PROCESS', attempts}
"""

# KEYS: task hash, results list.  ARGV: status, ttl ms, reason, results...  Returns 1 when it ended the task.
_END = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'SUCCESS' or status == 'FAILED' then return 0 end
redis.call('DEL', KEYS[2])
local n = #ARGV - 3
for i = 4, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[3], 'total', n, 'trimmed', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: task hash, results list.  ARGV: start (-1: first kept), limit.
# Returns {start, items...}; {-1} bad cursor; {-2} unknown task.
_PAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local trimmed = tonumber(redis.call('HGET', KEYS[1], 'trimmed') or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
local start = tonumber(ARGV[1])
if start < 0 then start = trimmed end
if start < trimmed or start > total then return {-1} end
if start > trimmed then
  redis.call('LTRIM', KEYS[2], start - trimmed, -1)
  redis.call('HSET', KEYS[1], 'trimmed', start)
end
local items = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)
table.insert(items, 1, start)
return items
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(SearchStore):
    """Tasks in Redis, shared by the API processes and the consumers.

    Redis being unreachable makes every call raise 503 ``service-unavailable`` (logged once per
    outage); the consumer's task code waits for it instead.
    """

    def __init__(self, client: Any, prefix: str, task_ttl: float) -> None:
        super().__init__(task_ttl)
        self.client = client
        self.prefix = prefix + "search:"
        self.health = Availability("search store: redis", log)
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._end_script = client.register_script(_END)
        self._page = client.register_script(_PAGE)

    def _keys(self, task_id: str) -> list[str]:
        return [f"{self.prefix}task:{task_id}", f"{self.prefix}results:{task_id}"]

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except (RedisError, OSError) as exc:
            self.health.failed(exc)
            raise ServiceUnavailable(str(exc)) from exc
        self.health.succeeded()
        return result

    async def create(self, task_id: str, owner: str, quota: str = "", limit: int = 0) -> bool:
        keys = [self._keys(task_id)[0], f"{self.prefix}outstanding:{quota}"]
        args = [owner, f"{time.time():.3f}", PENDING_TTL, limit, task_id, f"{self.prefix}task:"]
        return bool(await self._run(self._create(keys=keys, args=args)))

    async def discard(self, task_id: str) -> None:
        await self._run(self.client.delete(*self._keys(task_id)))

    async def get(self, task_id: str) -> TaskInfo | None:
        status, owner = await self._run(self.client.hmget(self._keys(task_id)[0], "status", "owner"))
        if status is None:
            return None
        return TaskInfo(_text(status), _text(owner or b""))

    async def claim(self, task_id: str, owner: str) -> Claim:
        reply = await self._run(self._claim(keys=self._keys(task_id)[:1], args=[owner, PENDING_TTL]))
        status, attempts = _text(reply[0]), int(reply[1])
        if status == RECREATED:
            return Claim(IN_PROCESS, attempts, recreated=True)
        return Claim(status, attempts)

    def _ttl_ms(self) -> int:
        return max(1, int(self.task_ttl * 1000))

    async def finish(self, task_id: str, results: list[bytes]) -> bool:
        args = [SUCCESS, self._ttl_ms(), "", *results]
        return bool(await self._run(self._end_script(keys=self._keys(task_id), args=args)))

    async def fail(self, task_id: str, reason: str) -> bool:
        args = [FAILED, self._ttl_ms(), reason[:500]]
        return bool(await self._run(self._end_script(keys=self._keys(task_id), args=args)))

    async def page(self, task_id: str, start: int | None, limit: int) -> Page:
        args = [-1 if start is None else start, limit]
        reply = await self._run(self._page(keys=self._keys(task_id), args=args))
        first = int(reply[0])
        if first == -2:
            raise task_not_found()
        if first == -1:
            raise bad_cursor()
        return Page(first, list(reply[1:]))
