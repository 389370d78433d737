"""Sessions: the ``sessions`` table is the truth, the cache holds the active ones.

A session row is written at login with its ``expires_at`` (login time + ``AUTH_TOKEN_LIFETIME``;
use never extends it) and gets ``logged_out_at`` at logout.  An active session is also cached, with
a TTL of what is left of its lifetime, so a request with a cached session touches only the cache;
a miss (another worker made it, Redis was flushed or restarted) reads the table and caches again.

Each session is a cache *group* of one field: logout updates the row, then ``invalidate``\\ s the
group, which both deletes the entry and bumps the group's generation, so a request that read the
row just before the logout cannot put the session back into the cache afterwards.

With the Redis cache, active sessions are also held in the process's near cache (``runtime.near``,
see :mod:`messenger_core.near`), so a request with a hot session makes no Redis round trip at all.
A session read from Redis or the table is kept there unless an eviction of it arrived meanwhile, and
only while the near cache's evictions channel is live; logout evicts it from Redis and from every
process (``near.evict``) before it answers, so no request sent after the logout response passes in
any worker.  The near copy expires with the session (and after ``NEAR_CACHE_TTL`` at the latest).

When the cache is not shared (``runtime.cache.shared`` is False: the memory cache with several
worker processes), a logout in one worker could not evict the session from another worker's
memory, so then every check reads the table and no per-process copy is trusted.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from messenger_core import ApiError, Identity, parse_uuid

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime
    from messenger_core import BaseHandler

    from .settings import AuthSettings

FIELD = "s"


@dataclass(frozen=True)
class Session:
    """What a session id stands for: its account, when it was made and when it ends (epoch seconds)."""

    account_id: str
    created: float
    expires: float
    logged_out: bool = False

    def encode(self) -> bytes:
        """The cached form (only active sessions are cached)."""
        return json.dumps({"a": self.account_id, "c": self.created, "e": self.expires}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Session | None":
        """Parse a cached entry; None when it is not one."""
        try:
            data = json.loads(raw)
            return cls(str(data["a"]), float(data["c"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None

    def ends_at(self, lifetime: int) -> float:
        """When it stops being valid: its stored expiry, or sooner if the lifetime was lowered since."""
        return min(self.expires, self.created + lifetime)


def _group(session_id: str) -> str:
    return f"auth:session:{session_id}"


def _failed(code: str) -> ApiError:
    return ApiError(401, code)


async def create(runtime: "Runtime", account_id: str, lifetime: int) -> str:
    """Start a session for ``account_id``: write the row, cache it; its 32-hex id."""
    session_id = uuid.uuid4()
    created = datetime.now(timezone.utc)
    expires = created + timedelta(seconds=lifetime)
    await runtime.db.execute(
        "INSERT INTO sessions (id, account_id, created_at, expires_at) VALUES (%s, %s, %s, %s)",
        (session_id, uuid.UUID(account_id), created, expires))
    session = Session(account_id, created.timestamp(), expires.timestamp())
    await _remember(runtime, session_id.hex, session, token=0)
    return session_id.hex


async def _remember(runtime: "Runtime", session_id: str, session: Session, token: int | None) -> None:
    """Cache an active session for what is left of its life (only in a shared cache)."""
    ttl = session.ends_at(runtime.config.auth.token_lifetime) - time.time()
    if token is None or ttl <= 0 or not runtime.cache.shared:
        return
    await runtime.cache.group_set(_group(session_id), FIELD, session.encode(), token, ttl)


async def _from_table(runtime: "Runtime", session_id: str) -> Session | None:
    row: dict[str, Any] | None = await runtime.db.fetchone(
        "SELECT account_id, created_at, expires_at, logged_out_at FROM sessions WHERE id = %s",
        (uuid.UUID(session_id),))
    if row is None:
        return None
    return Session(row["account_id"].hex, row["created_at"].timestamp(), row["expires_at"].timestamp(),
                   row["logged_out_at"] is not None)


async def lookup(runtime: "Runtime", session_id: str) -> Session | None:
    """The session: from the near cache, else the cache, else the table (then cached if active)."""
    if not runtime.cache.shared:
        return await _from_table(runtime, session_id)
    group = _group(session_id)
    near = runtime.near
    if near is None:
        return await _from_cache(runtime, session_id, group)
    held: Session | None = near.get(group)
    if held is not None:
        return held
    with near.reading(group) as read:
        session = await _from_cache(runtime, session_id, group)
        if session is not None and not session.logged_out:
            read.keep(session, session.ends_at(runtime.config.auth.token_lifetime) - time.time())
    return session


async def _from_cache(runtime: "Runtime", session_id: str, group: str) -> Session | None:
    """The session from the shared cache, else from the table (then cached if active)."""
    cache = runtime.cache
    raw = await cache.group_get(group, FIELD)
    if raw is not None:
        cached = Session.decode(raw)
        if cached is not None:
            return cached
    token = await cache.group_token(group)  # taken before reading the truth
    session = await _from_table(runtime, session_id)
    if session is not None and not session.logged_out:
        await _remember(runtime, session_id, session, token)
    return session


async def end(runtime: "Runtime", session_id: str) -> None:
    """Log out: mark the row, then drop the session from the cache and from every process's near copy."""
    await runtime.db.execute(
        "UPDATE sessions SET logged_out_at = now() WHERE id = %s AND logged_out_at IS NULL",
        (uuid.UUID(session_id),))
    if runtime.near is not None:
        await runtime.near.evict(_group(session_id))
    elif runtime.cache.shared:
        await runtime.cache.invalidate(_group(session_id))


def session_id_from_header(handler: "BaseHandler", settings: "AuthSettings") -> str | None:
    """The 32-hex session id of ``<header>: <token type> <uuid>``; None without the header.

    Raises 401 ``auth-failed`` for a malformed value, another token type or a value that is not a UUID.
    """
    value = handler.request.headers.get(settings.header_name)
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != settings.token_type.lower():
        raise _failed("auth-failed")
    parsed = parse_uuid(parts[1])
    if parsed is None:
        raise _failed("auth-failed")
    return parsed.hex


async def identify(handler: "BaseHandler", settings: "AuthSettings") -> Identity | None:
    """Who the request's session belongs to; None without credentials, else a 401 or the identity.

    ``invalid-session-id`` for an unknown or logged-out session, ``session-id-expired`` once the
    session is older than its lifetime.
    """
    session_id = session_id_from_header(handler, settings)
    if session_id is None:
        return None
    session = await lookup(handler.runtime, session_id)
    if session is None or session.logged_out:
        raise _failed("invalid-session-id")
    if time.time() >= session.ends_at(settings.token_lifetime):
        raise _failed("session-id-expired")
    return Identity(account_id=session.account_id, session_id=session_id)


async def require_session(handler: "BaseHandler") -> None:
    """The auth request hook: every non-public request needs a valid session (401 otherwise)."""
    if handler.public:
        return
    if await handler.authenticate() is None:
        raise _failed("auth-failed")
