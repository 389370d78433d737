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

from . import instruments
from .errors import StartupError
from .logs import REQUEST_ID_HEADER, new_request_id, valid_request_id
from .openapi import spec_json
from .plugins import PluginManager
from .runtime import Runtime
from .settings import Config
from .web import BodyLimit, NotFoundHandler, RequestHook

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
        super().__init__([_labelled(route) for route in routes], default_handler_class=NotFoundHandler,
                         **settings)

    def start_request(self, server_conn: object, request_conn: Any) -> Any:
        """Tornado's delegate of one request, behind the body-size limit (413 JSON, see BodyLimit)."""
        return BodyLimit(super().start_request(server_conn, request_conn), request_conn, app=self)

    def trusted_proxy(self, address: str) -> bool:
        """Whether ``address`` is in TRUSTED_PROXIES."""
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def request_id_of(self, request: Any) -> str:
        """The id a request is known by: a trusted proxy's valid ``X-Request-Id``, else a new one."""
        given = request.headers.get(REQUEST_ID_HEADER)
        if given and self.trusted_proxy(request.remote_ip or "") and valid_request_id(given):
            return given
        return new_request_id()

    def openapi_json(self) -> bytes:
        """The OpenAPI document as JSON bytes (built once)."""
        if self._openapi is None:
            self._openapi = spec_json(self)
        return self._openapi

    def log_request(self, handler: Any) -> None:
        """Count the request in the metrics; one access-log line: status, method, URI, latency, client, route."""
        status = handler.get_status()
        request = handler.request
        seconds = request.request_time()
        route = getattr(handler, "route_label", instruments.UNMATCHED)
        instruments.count_request(request.method or "", route, status, seconds)
        if not self.config.access_log:
            return
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        ms = round(1000.0 * seconds, 1)
        access_log.log(level, "%d %s %s %.1fms %s %s", status, request.method, request.uri, ms,
                       request.remote_ip, route,
                       extra={"method": request.method, "route": route, "path": request.path, "status": status,
                              "duration_ms": ms, "client": request.remote_ip,
                              "request_id": getattr(handler, "request_id", None) or None})


def _labelled(route: tuple[Any, ...]) -> tuple[Any, ...]:
    """The route with its pattern's label among the handler's kwargs (for metrics and access lines)."""
    kwargs = dict(route[2]) if len(route) > 2 and route[2] else {}
    kwargs.setdefault("route_label", instruments.route_label(route[0]))
    return (route[0], route[1], kwargs, *route[3:])


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
