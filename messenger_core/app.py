"""Assembly: the per-process Runtime (shared resources) and the Tornado application.

``make_app(config, plugins)`` asks the enabled plugins for routes, request hooks and tasks,
refuses duplicates, and returns a :class:`MessengerApp`; ``await app.runtime.start()`` then opens
the pools (after any fork), applies migrations in the background and calls the plugins'
``messenger_startup`` hooks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from tornado.web import Application

from . import db as dbmod
from .broker import TaskQueue, collect_tasks, make_queue
from .cache import Cache, make_cache, redis_client
from .errors import StartupError
from .near import NearCache, make_near_cache
from .openapi import docs_routes, spec_json
from .plugins import PluginManager, gather
from .settings import Config
from .web import BaseHandler, NotFoundHandler, PingDbHandler, PingHandler, RequestHook

log = logging.getLogger("messenger.app")
access_log = logging.getLogger("messenger.access")


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
        self.tasks = collect_tasks(plugins.call_each("messenger_task_handlers", config=config))
        self.queue: TaskQueue = make_queue(config.rmq_url, self.tasks, config.embedded_workers)
        self.migrations = [spec for _, spec in plugins.call_each("messenger_migrations", config=config)]
        dbmod.order_specs(self.migrations)  # fail now on a missing dependency or a cycle
        self.state: dict[str, Any] = {}
        self.inflight = 0
        self._migrator: asyncio.Task[None] | None = None
        self.migrated = asyncio.Event()
        self.first_migration_attempt = asyncio.Event()  # set once the first try ended, either way

    @property
    def redis(self) -> Any:
        """A redis.asyncio client for ``REDIS_URL`` (created on first use)."""
        if self._redis is None:
            self._redis = redis_client(self.config)
        return self._redis

    async def start(self, migrate: bool = True) -> None:
        """Start migrating (retrying while PostgreSQL is away; the pool opens after), start plugins."""
        if migrate:
            self._migrator = asyncio.create_task(self._migrate_until_done())
        else:
            await self._mark_ready()
            self.first_migration_attempt.set()
        await self.queue.start(self)
        await gather(self.plugins.hook.messenger_startup(runtime=self))

    async def _mark_ready(self) -> None:
        await self.db.open()
        self.migrated.set()

    async def _migrate_until_done(self) -> None:
        delay = 0.5
        while True:
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
            delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Stop plugins, then the queue, the near cache's subscription, cache, Redis and the pool."""
        if self._migrator is not None:
            self._migrator.cancel()
        await gather(self.plugins.hook.messenger_shutdown(runtime=self))
        await self.queue.close()
        if self.near is not None:
            await self.near.close()
        await self.cache.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.db.close()


class MessengerApp(Application):
    """The Tornado application with the runtime and the ordered request hooks attached."""

    def __init__(self, runtime: Runtime, routes: list[tuple[Any, ...]], hooks: list[RequestHook],
                 **settings: Any) -> None:
        self.runtime = runtime
        self.plugins = runtime.plugins
        self.config = runtime.config
        self.request_hooks = hooks
        self.routes = routes
        self._trusted = runtime.config.trusted_proxies
        self._openapi: bytes | None = None
        super().__init__(routes, default_handler_class=NotFoundHandler, **settings)

    def trusted_proxy(self, address: str) -> bool:
        """Whether ``address`` is in TRUSTED_PROXIES."""
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def openapi_json(self) -> bytes:
        """The OpenAPI document as JSON bytes (built once)."""
        if self._openapi is None:
            self._openapi = spec_json(self)
        return self._openapi

    def log_request(self, handler: Any) -> None:
        """One access-log line per request: status, method, path, latency, client."""
        if not self.config.access_log:
            return
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        request = handler.request
        access_log.log(level, "%d %s %s %.1fms %s", status, request.method, request.uri,
                       1000.0 * request.request_time(), request.remote_ip)


CORE_ROUTES: list[tuple[Any, ...]] = [
    (r"/ping", PingHandler),
    (r"/ping_db", PingDbHandler),
]


def collect_routes(plugins: PluginManager, config: Config) -> list[tuple[Any, ...]]:
    """Core routes plus every plugin's; a pattern claimed twice stops start-up."""
    owners: dict[str, str] = {}
    routes: list[tuple[Any, ...]] = []
    contributed = [("core", CORE_ROUTES + docs_routes())]
    contributed += plugins.call_each("messenger_routes", config=config)
    for plugin, items in contributed:
        for route in items:
            pattern, handler = route[0], route[1]
            if pattern in owners:
                raise StartupError(f"route {pattern!r} is claimed by both {owners[pattern]!r} and {plugin!r}")
            if not (isinstance(handler, type) and issubclass(handler, BaseHandler)):
                raise StartupError(f"route {pattern!r} of {plugin!r}: handler must derive from BaseHandler")
            owners[pattern] = plugin
            routes.append(tuple(route))
    return routes


def collect_request_hooks(plugins: PluginManager, config: Config) -> list[RequestHook]:
    """Every plugin's request hooks, sorted by (order, name); a duplicate name stops start-up."""
    hooks: list[RequestHook] = []
    names: set[str] = set()
    for plugin, items in plugins.call_each("messenger_request_hooks", config=config):
        for hook in items:
            if hook.name in names:
                raise StartupError(f"request hook {hook.name!r} of {plugin!r} is declared twice")
            names.add(hook.name)
            hooks.append(hook)
    return sorted(hooks, key=lambda h: (h.order, h.name))


def make_app(config: Config, plugins: PluginManager, processes: int = 1, **settings: Any) -> MessengerApp:
    """Build the application of one process (call ``await app.runtime.start()`` next)."""
    runtime = Runtime(config, plugins, processes)
    routes = collect_routes(plugins, config)
    hooks = collect_request_hooks(plugins, config)
    settings.setdefault("compress_response", False)
    return MessengerApp(runtime, routes, hooks, **settings)
