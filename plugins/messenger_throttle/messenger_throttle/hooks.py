"""Hook implementations of ``messenger_throttle`` (see messenger_core.hookspecs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from messenger_core import RequestHook, hookimpl

from .limiter import throttle_of, throttle_request
from .settings import ThrottleSettings

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime
    from messenger_core import Config
    from messenger_core import BaseHandler


@hookimpl
def messenger_settings() -> type[ThrottleSettings]:
    """The ``throttle`` settings section."""
    return ThrottleSettings


@hookimpl
def messenger_request_hooks(config: "Config") -> list[RequestHook]:
    """The per-client request limit, unless nginx does that job (``NGINX_THROTTLING``)."""
    if config.throttle.nginx_throttling:
        return []
    return [RequestHook("throttle", 100, throttle_request)]


@hookimpl
async def messenger_rate_limit(handler: "BaseHandler", scope: str, key: str) -> None:
    """Login protection (kept with nginx too: only the app sees user names)."""
    await throttle_of(handler.runtime).check_attempt(handler, scope, key)


@hookimpl
def messenger_startup(runtime: "Runtime") -> None:
    """Create the API process's limiters (after the fork, so Redis connections are per process)."""
    if runtime.role == "api":
        throttle_of(runtime)
