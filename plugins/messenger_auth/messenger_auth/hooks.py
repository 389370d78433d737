"""Hook implementations of ``messenger_auth`` (see messenger_core.hookspecs)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from messenger_core import BaseHandler, Config, Identity, Migrations, RequestHook, Runtime, hookimpl

from . import sessions
from .handlers import STATE_KEY, default_handlers
from .schemas import SCHEMAS
from .settings import AuthSettings


@hookimpl
def messenger_settings() -> type[AuthSettings]:
    """The ``auth`` settings section."""
    return AuthSettings


@hookimpl
def messenger_routes() -> list[tuple[Any, ...]]:
    """Register, login, logout."""
    return list(default_handlers)


@hookimpl
def messenger_schemas() -> dict[str, Any]:
    """Request and response bodies."""
    return dict(SCHEMAS)


@hookimpl
def messenger_security_schemes(config: Config) -> dict[str, dict[str, Any]] | None:
    """The session header, unless auth is switched off (then no operation needs it)."""
    if config.auth.disabled:
        return None
    return {"session": {
        "type": "apiKey", "in": "header", "name": config.auth.header_name,
        "description": f"`{config.auth.token_type} <session_id>` with a session_id from POST /v1/auth/login",
    }}


@hookimpl
def messenger_migrations() -> Migrations:
    """Tables accounts and sessions."""
    return Migrations("messenger_auth", "messenger_auth.migrations")


@hookimpl
def messenger_request_hooks(config: Config) -> list[RequestHook]:
    """Authenticate every non-public request (nothing when AUTH_DISABLED)."""
    if config.auth.disabled:
        return []
    return [RequestHook("auth", 200, sessions.require_session)]


@hookimpl
async def messenger_authenticate(handler: BaseHandler) -> Identity | None:
    """The caller's account from the session header (None when auth is off or no header is sent)."""
    settings = handler.runtime.config.auth
    if settings.disabled:
        return None
    return await sessions.identify(handler, settings)


@hookimpl
def messenger_shutdown(runtime: Runtime) -> None:
    """Stop the password-hashing threads."""
    executor: Executor | None = runtime.state.pop(STATE_KEY, None)
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
