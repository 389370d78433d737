"""Hook implementations of ``messenger_events`` (see messenger_core.hookspecs).

The real-time stream ``GET /v1/events`` over the chats plugin's public module (``messenger_chats.api``);
``pip uninstall messenger-events`` removes it and nothing else.
"""

# pylint: disable=unused-argument  # hookimpls take the arguments their specs name

from __future__ import annotations

from typing import Any

from messenger_core import Config, Runtime, hookimpl

from .handlers import default_handlers
from .state import OPEN, hub_of
from .schemas import SCHEMAS
from .settings import EventsSettings


@hookimpl
def messenger_settings() -> type[EventsSettings]:
    """The ``events`` settings section."""
    return EventsSettings


@hookimpl
def messenger_routes(config: Config) -> list[tuple[Any, ...]]:
    """``/v1/events``."""
    return list(default_handlers)


@hookimpl
def messenger_schemas(config: Config) -> dict[str, Any]:
    """The stream's frames, for the OpenAPI document."""
    return dict(SCHEMAS)


@hookimpl
def messenger_startup(runtime: Runtime) -> None:
    """An API worker listens for the chats' events from the start and exports its stream gauge (0); the
    consumer streams nothing."""
    if runtime.role == "api":
        hub_of(runtime)
        OPEN.inc(0)
