"""Hook implementations of ``messenger_chats`` (see messenger_core.hookspecs)."""

from __future__ import annotations

from typing import Any

from messenger_core import Migrations, Runtime, hookimpl

from . import state, waiting
from .errors import COMPONENTS
from .handlers import default_handlers
from .schemas import SCHEMAS
from .settings import ChatsSettings


@hookimpl
def messenger_settings() -> type[ChatsSettings]:
    """The ``chats`` settings section."""
    return ChatsSettings


@hookimpl
def messenger_routes() -> list[tuple[Any, ...]]:
    """Chats, members, invites, read markers and messages."""
    return list(default_handlers)


@hookimpl
def messenger_schemas() -> dict[str, Any]:
    """Request and response schemas for the OpenAPI document."""
    return dict(SCHEMAS)


@hookimpl
def messenger_openapi_components() -> dict[str, Any]:
    """The ``ChatId`` path parameter and the ``ChatNotFound`` response."""
    return COMPONENTS


@hookimpl
def messenger_migrations() -> Migrations:
    """Tables chats, chat_members, messages, chat_accounts, chat_invites."""
    return Migrations("messenger_chats", "messenger_chats.migrations")


@hookimpl
def messenger_startup(runtime: Runtime) -> None:
    """The process's store over the shared database pool and cache; an API worker exports its long-poll
    gauge from the start (0), not only after its first long-poll."""
    state.start(runtime)
    if runtime.role == "api":
        waiting.HELD.inc(0)
