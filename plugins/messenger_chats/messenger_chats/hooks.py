"""Hook implementations of ``messenger_chats`` (see messenger_core.hookspecs)."""

# pylint: disable=unused-argument  # hookimpls take the arguments their specs name

from __future__ import annotations

from typing import Any

from messenger_core import Runtime
from messenger_core import Migrations
from messenger_core import hookimpl
from messenger_core import Config

from .handlers import STATE_KEY, default_handlers
from .schemas import SCHEMAS
from .settings import ChatsSettings
from .store import ChatStore


@hookimpl
def messenger_settings() -> type[ChatsSettings]:
    """The ``chats`` settings section."""
    return ChatsSettings


@hookimpl
def messenger_routes(config: Config) -> list[tuple[Any, ...]]:
    """Chats, members and messages."""
    return list(default_handlers)


@hookimpl
def messenger_schemas(config: Config) -> dict[str, Any]:
    """Request and response schemas for the OpenAPI document."""
    return dict(SCHEMAS)


@hookimpl
def messenger_migrations(config: Config) -> Migrations:
    """Tables chats, chat_members, messages."""
    return Migrations("messenger_chats", "messenger_chats.migrations")


@hookimpl
def messenger_startup(runtime: Runtime) -> None:
    """The process's store over the shared database pool and cache."""
    runtime.state[STATE_KEY] = ChatStore(runtime.db, runtime.cache, runtime.config.chats)
