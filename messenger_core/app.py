"""Assembly: the Tornado application of one process, over its :class:`~messenger_core.runtime.Runtime`.

``make_app(config, plugins)`` asks the enabled plugins for routes, request hooks and tasks,
refuses duplicates, and returns a :class:`MessengerApp`; ``await app.runtime.start()`` then opens
the pools (after any fork), applies migrations in the background and calls the plugins'
``messenger_startup`` hooks.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from tornado.web import Application

from .errors import StartupError
from .openapi import docs_routes, spec_json
from .plugins import PluginManager
from .runtime import Runtime
from .settings import Config
from .web import BaseHandler, BodyLimit, NotFoundHandler, PingDbHandler, PingHandler, RequestHook

log = logging.getLogger("messenger.app")
access_log = logging.getLogger("messenger.access")


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

    def start_request(self, server_conn: object, request_conn: Any) -> Any:
        """Tornado's delegate of one request, behind the body-size limit (413 JSON, see BodyLimit)."""
        return BodyLimit(super().start_request(server_conn, request_conn), request_conn)

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
