"""Hook implementations of ``messenger_throttle`` (see messenger_core.hookspecs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from messenger_core import RequestHook, hookimpl

from .settings import ThrottleSettings
from .state import start, throttle_of

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
    return [RequestHook("throttle", 100, _throttle_request)]


async def _throttle_request(handler: "BaseHandler") -> None:
    """The ``throttle`` request hook (order 100, before auth): the per-client request limit."""
    await throttle_of(handler.runtime).check_request(handler)


@hookimpl
def messenger_openapi_responses() -> dict[str, str]:
    """Every operation may answer 429 (the per-client limit in the app, or nginx's with NGINX_THROTTLING)."""
    return {"429": "TooManyRequests"}


@hookimpl
async def messenger_rate_limit(handler: "BaseHandler", scope: str, key: str) -> None:
    """Login and registration protection (kept with nginx too: only the app sees user names)."""
    await throttle_of(handler.runtime).check_attempt(handler, scope, key)


@hookimpl
async def messenger_attempt_succeeded(handler: "BaseHandler", scope: str, key: str) -> None:
    """A successful login is not counted against its client."""
    await throttle_of(handler.runtime).attempt_succeeded(handler, scope, key)


@hookimpl
def messenger_startup(runtime: "Runtime") -> None:
    """Create the API process's limiters (after the fork, so Redis connections are per process)."""
    if runtime.role == "api":
        start(runtime)
