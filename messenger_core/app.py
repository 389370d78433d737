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

from tornado.web import Application, RequestHandler

from .errors import StartupError
from .openapi import spec_json
from .plugins import PluginManager
from .runtime import Runtime
from .settings import Config
from .web import NotFoundHandler, RequestHook

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


def make_app(config: Config, plugins: PluginManager, processes: int = 1, **settings: Any) -> MessengerApp:
    """Build the application of one process (call ``await app.runtime.start()`` next)."""
    runtime = Runtime(config, plugins, processes)
    contributed = runtime.contributions
    for route in contributed.routes:
        handler = route[1]
        if not (isinstance(handler, type) and issubclass(handler, RequestHandler)):
            plugin = contributed.owners[("route", route[0])]
            raise StartupError(f"route {route[0]!r} of {plugin!r}: handler must be a RequestHandler (a BaseHandler)")
    settings.setdefault("compress_response", False)
    return MessengerApp(runtime, list(contributed.routes), list(contributed.request_hooks), **settings)
