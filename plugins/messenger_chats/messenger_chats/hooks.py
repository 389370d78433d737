"""Hook implementations of ``messenger_chats`` (see messenger_core.hookspecs)."""

# pylint: disable=unused-argument  # hookimpls take the arguments their specs name

from __future__ import annotations

from typing import Any

from messenger_core import Runtime
from messenger_core import Migrations
from messenger_core import hookimpl
from messenger_core import Config

from .conversations import Conversations
from .handlers import CONVERSATIONS_KEY, STATE_KEY, default_handlers
from .schemas import SCHEMAS
from .settings import ChatsSettings
from .store import ChatStore


@hookimpl
def messenger_settings() -> type[ChatsSettings]:
    """The ``chats`` settings section."""
    return ChatsSettings


@hookimpl
def messenger_routes(config: Config) -> list[tuple[Any, ...]]:
    """Chats, members, invites, read markers and messages."""
    return list(default_handlers)


@hookimpl
def messenger_schemas(config: Config) -> dict[str, Any]:
    """Request and response schemas for the OpenAPI document."""
    return dict(SCHEMAS)


@hookimpl
def messenger_migrations(config: Config) -> Migrations:
    """Tables chats, chat_members, messages, chat_accounts, chat_invites."""
    return Migrations("messenger_chats", "messenger_chats.migrations")


@hookimpl
def messenger_startup(runtime: Runtime) -> None:
    """The process's store over the shared database pool and cache."""
    store = ChatStore(runtime.db, runtime.cache, runtime.config.chats, runtime.near)
    runtime.state[STATE_KEY] = store
    runtime.state[CONVERSATIONS_KEY] = Conversations(store, runtime.config.chats.invite_ttl)
