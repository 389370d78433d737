"""Hook implementations of ``messenger_auth`` (see messenger_core.hookspecs)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from messenger_core import SESSIONS_CHANNEL, BaseHandler, Config, Identity, Migrations, RequestHook, Runtime, hookimpl

from . import sessions, state
from .epoch import SessionsEpoch
from .handlers import default_handlers
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
    """Tables accounts, sessions and sessions_epoch."""
    return Migrations("messenger_auth", "messenger_auth.migrations")


@hookimpl
def messenger_request_hooks(config: Config) -> list[RequestHook]:
    """Authenticate every non-public request (nothing when AUTH_DISABLED)."""
    if config.auth.disabled:
        return []
    return [RequestHook("auth", 200, sessions.require_session)]


@hookimpl
async def messenger_authenticate(handler: BaseHandler) -> Identity | None:
    """The caller's account from the session header (None when no header is sent, or when auth is off
    except for logout, which still ends a session that is sent)."""
    settings = handler.runtime.config.auth
    if settings.disabled and not getattr(handler, "ends_session", False):
        return None
    return await sessions.identify(handler, settings)


@hookimpl
async def messenger_session_identity(runtime: Runtime, session_id: str | None) -> Identity | None:
    """A bare session id's account (a stream's first frame); None when auth is off."""
    settings = runtime.config.auth
    if settings.disabled:
        return None
    return await sessions.identify_bare(runtime, session_id, settings)


@hookimpl
def messenger_startup(runtime: Runtime) -> None:
    """The hasher; in an API process also the sessions table's cleanup (``AUTH_SESSIONS_CLEANUP_INTERVAL``)
    and, with the Redis cache, the sessions epoch followed over LISTEN (and near copies of ended sessions
    dropped by their notification)."""
    started = state.start(runtime)
    if runtime.role == "api" and runtime.config.auth.cleanup_interval:
        started.cleanup = asyncio.get_running_loop().create_task(sessions.clean_forever(runtime))
    if runtime.role == "api" and runtime.config.cache_type == "redis":
        tracker = started.epoch = SessionsEpoch(runtime)
        runtime.pubsub.on_resync(tracker.resync)
        runtime.pubsub.subscribe(SESSIONS_CHANNEL, tracker.heard)
        if runtime.near is not None:
            runtime.pubsub.subscribe(SESSIONS_CHANNEL, partial(sessions.forget_ended, runtime))


@hookimpl
async def messenger_shutdown(runtime: Runtime) -> None:
    """Stop the cleanup, the epoch's reads and the password-hashing threads."""
    stopped: state.AuthState | None = runtime.state.pop(state.KEY, None)
    if stopped is None:
        return
    if stopped.epoch is not None:
        stopped.epoch.close()
    if stopped.cleanup is not None:
        stopped.cleanup.cancel()
        await asyncio.gather(stopped.cleanup, return_exceptions=True)
    stopped.hasher.shutdown()
