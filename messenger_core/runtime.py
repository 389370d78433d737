"""The per-process Runtime: config, plugins, the PostgreSQL pool, cache, Redis, task queue, plugin state.

The API worker and ``messenger-consumer`` each build one after any fork.  This module imports none
of the web layer, so a plugin's hooks module can name ``Runtime`` without pulling in Tornado's web
stack or apispec.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from . import db as dbmod
from . import instruments
from .broker import TaskQueue, make_queue
from .contributions import Contributions
from .cache import Cache, make_cache, redis_client
from .near import NearCache, make_near_cache
from .aio import Backoff, bounded, gather
from .plugins import PluginManager
from .pubsub import PubSub
from .settings import Config
from .signing import Signer, secret_of

log = logging.getLogger("messenger.runtime")
STOP_STEP_SECONDS = 3.0  # most seconds one shutdown step (a pool, a connection, the plugins' hooks) may take


class Runtime:
    """What one process shares between requests (or tasks): config, plugins, pools, plugin state.

    The API worker and ``messenger-consumer`` each build one.  ``redis`` is the process's one
    redis.asyncio client (created on first use; the Redis cache, search results and throttle
    counters share its pool);
    ``cache`` is the cache chosen by ``CACHE_TYPE``; ``near`` its per-process layer of hot groups
    (Redis cache only, else None; see :mod:`messenger_core.near`); ``signer`` seals what a plugin caches
    and will trust (``CACHE_SECRET``; see :mod:`messenger_core.signing`); ``queue`` publishes tasks;
    ``pubsub`` is the process's ``LISTEN`` connection (opened on the first subscription; see
    :mod:`messenger_core.pubsub`).  ``draining`` is set once the process stops taking work (SIGTERM):
    what holds a client waiting answers it now; ``on_drain`` callbacks run then.
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
        self.signer = Signer(secret_of(config))
        self.contributions: Contributions = plugins.contributions(config)
        self.tasks = dict(self.contributions.tasks)
        self.queue: TaskQueue = make_queue(config.rmq_url, self.tasks, config.embedded_workers)
        self.migrations = list(self.contributions.migrations)
        self.state: dict[str, Any] = {}
        self.pubsub = PubSub(config.postgres_conninfo)
        self.draining = asyncio.Event()
        self._on_drain: list[Callable[[], None]] = []
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

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the process starts shutting down (before requests in flight finish)."""
        self._on_drain.append(callback)

    def drain(self) -> None:
        """Stop holding clients: set ``draining`` and run the ``on_drain`` callbacks (once)."""
        if self.draining.is_set():
            return
        self.draining.set()
        for callback in list(self._on_drain):
            try:
                callback()
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("a drain callback failed")

    async def stop(self) -> None:
        """Drain, stop plugins, then the LISTEN connection, the queue, the near cache, cache, Redis, pool.

        Each step gets at most ``STOP_STEP_SECONDS``: one that overruns is logged by name and left
        behind, so that the process still exits.
        """
        if self._migrator is not None:
            self._migrator.cancel()
        if self._sampler is not None:
            self._sampler.cancel()
        self.drain()
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("the plugins' shutdown hooks", lambda: gather(self.plugins.hook.messenger_shutdown(runtime=self))),
            ("the LISTEN connection", self.pubsub.close),
            ("the task queue", self.queue.close),
        ]
        if self.near is not None:
            steps.append(("the near cache", self.near.close))
        steps.append(("the cache", self.cache.close))
        if self._redis is not None:
            steps.append(("the Redis client", self._redis.aclose))
        steps.append(("the PostgreSQL pool", self.db.close))
        for name, step in steps:
            await bounded(name, step(), STOP_STEP_SECONDS, log)
