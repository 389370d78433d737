"""The per-process Runtime: config, plugins, the PostgreSQL pool, cache, Redis, task queue, plugin state.

The API worker and ``messenger-consumer`` each build one after any fork.  This module imports none
of the web layer, so a plugin's hooks module can name ``Runtime`` without pulling in Tornado's web
stack or apispec.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import db as dbmod
from . import instruments
from .broker import TaskQueue, make_queue
from .contributions import Contributions
from .cache import Cache, make_cache, redis_client
from .near import NearCache, make_near_cache
from .aio import Backoff, gather
from .plugins import PluginManager
from .settings import Config

log = logging.getLogger("messenger.runtime")


class Runtime:
    """What one process shares between requests (or tasks): config, plugins, pools, plugin state.

    The API worker and ``messenger-consumer`` each build one.  ``redis`` is the process's one
    redis.asyncio client (created on first use; the Redis cache, search results and throttle
    counters share its pool);
    ``cache`` is the cache chosen by ``CACHE_TYPE``; ``near`` its per-process layer of hot groups
    (Redis cache only, else None; see :mod:`messenger_core.near`); ``queue`` publishes tasks.
    """

    def __init__(self, config: Config, plugins: PluginManager, processes: int = 1,
                 role: str = "api") -> None:
        self.config = config
        self.role = role  # "api" or "consumer"
        self.plugins = plugins
        self.processes = processes
        self.db = dbmod.Database(config)
        self._redis: Any = None
        client = self.redis if config.cache_type == "redis" else None
        self.cache: Cache = make_cache(config, processes, client)
        self.near: NearCache | None = make_near_cache(config, self.cache, client)
        self.contributions: Contributions = plugins.contributions(config)
        self.tasks = dict(self.contributions.tasks)
        self.queue: TaskQueue = make_queue(config.rmq_url, self.tasks, config.embedded_workers)
        self.migrations = list(self.contributions.migrations)
        self.state: dict[str, Any] = {}
        self.inflight = 0
        self._migrator: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.migrated = asyncio.Event()
        self.first_migration_attempt = asyncio.Event()  # set once the first try ended, either way

    @property
    def redis(self) -> Any:
        """A redis.asyncio client for ``REDIS_URL`` (created on first use)."""
        if self._redis is None:
            self._redis = redis_client(self.config)
        return self._redis

    @property
    def uses_redis(self) -> bool:
        """Whether anything in this process took the Redis client (the cache, search, throttle)."""
        return self._redis is not None

    async def start(self, migrate: bool = True) -> None:
        """Start migrating (retrying while PostgreSQL is away; the pool opens after), start plugins."""
        if migrate:
            self._migrator = asyncio.create_task(self._migrate_until_done())
        else:
            await self._mark_ready()
            self.first_migration_attempt.set()
        await self.queue.start(self)
        self._sampler = asyncio.create_task(instruments.sample_forever(self))
        await gather(self.plugins.hook.messenger_startup(runtime=self))

    async def _mark_ready(self) -> None:
        await self.db.open()
        self.migrated.set()

    async def _migrate_until_done(self) -> None:
        backoff = Backoff(0.5, 5.0)
        while True:
            delay = backoff.next()
            try:
                await dbmod.migrate_up(self.config, self.migrations)
                await self._mark_ready()
                self.first_migration_attempt.set()
                return
            except dbmod.UNAVAILABLE as exc:
                log.warning("migrations wait for the database (%s); retrying in %.1fs",
                            str(exc).strip() or type(exc).__name__, delay)
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("migrations failed; retrying in %.1fs", delay)
            self.first_migration_attempt.set()
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop plugins, then the queue, the near cache's subscription, cache, Redis and the pool."""
        if self._migrator is not None:
            self._migrator.cancel()
        if self._sampler is not None:
            self._sampler.cancel()
        await gather(self.plugins.hook.messenger_shutdown(runtime=self))
        await self.queue.close()
        if self.near is not None:
            await self.near.close()
        await self.cache.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.db.close()
