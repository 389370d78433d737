"""Sessions: the ``sessions`` table is the truth, the cache holds the active ones.

A session row is written at login with its ``expires_at`` (login time + ``AUTH_TOKEN_LIFETIME``;
use never extends it) and gets ``logged_out_at`` at logout.  An active session is also cached, with
a TTL of what is left of its lifetime, so a request with a cached session touches only the cache;
a miss (another worker made it, Redis was flushed or restarted) reads the table and caches again.

Each session is a cache *group* of one field, named after a SHA-256 of its id (so whoever reads Redis
learns no session id).  The cached entry is sealed by ``runtime.signer`` (``CACHE_SECRET``): an entry
that does not open (written into Redis by someone else, altered, or copied from another session's
key) counts as a miss, so the table decides and a genuine entry replaces it.

Logout updates the row, then ``invalidate``\\ s the group, which both deletes the entry and bumps the
group's generation, so a request that read the row just before the logout cannot put the session
back into the cache afterwards.

With the Redis cache, active sessions are also held in the process's near cache (``runtime.near``,
see :mod:`messenger_core.near`), so a request with a hot session makes no Redis round trip at all.
A session read from Redis or the table is kept there unless an eviction of it arrived meanwhile, and
only while the near cache's evictions channel is live; logout evicts it from Redis and from every
process (``near.evict``) before it answers, so no request sent after the logout response passes in
any worker.  The near copy expires with the session (and after ``NEAR_CACHE_TTL`` at the latest).

A logout is effective everywhere or answers 503 having changed nothing (:func:`end`): it evicts
first (when that cannot reach Redis: 503, the row untouched), then ends the row, then evicts again
(the first eviction is redone because a request may have cached the session again in between).  If
only that second eviction fails, the row's end is undone and the answer is 503: the session then
stays valid everywhere, consistently, and the client may log out again.

When the cache is not shared (``runtime.cache.shared`` is False: the memory cache with several
worker processes), a logout in one worker could not evict the session from another worker's
memory, so then every check reads the table and no per-process copy is trusted.

Ended rows are deleted by every API process every ``AUTH_SESSIONS_CLEANUP_INTERVAL`` seconds
(:func:`clean_forever`): logged-out rows, and expired rows once ``AUTH_SESSIONS_KEEP_EXPIRED`` has
passed (until then the session still answers ``session-id-expired``).  Each DELETE takes at most
``AUTH_SESSIONS_CLEANUP_BATCH`` rows, found through an index, and skips the ones another process is
deleting (``FOR UPDATE SKIP LOCKED``), so two processes never wait for each other or do the same work,
and each batch is a short transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from messenger_core import SESSIONS_CHANNEL, Identity, ServiceUnavailable, Unavailable, parse_uuid

from .errors import auth_failed, invalid_session_id, session_id_expired

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime
    from messenger_core import BaseHandler

    from .settings import AuthSettings

log = logging.getLogger("messenger.auth")

FIELD = "s"
BATCH_PAUSE = 0.05  # seconds between two batches of a cleanup: other statements get the table in between


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
    """The session's cache group: named after a hash of its id, never the id itself."""
    return "auth:session:" + hashlib.sha256(session_id.encode("ascii")).hexdigest()[:32]


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
    group = _group(session_id)
    await runtime.cache.group_set(group, FIELD, runtime.signer.seal(group, session.encode()), token, ttl)


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
        opened = runtime.signer.open(group, raw)  # None: not written by this service (or altered)
        cached = Session.decode(opened) if opened is not None else None
        if cached is not None:
            return cached
    token = await cache.group_token(group)  # taken before reading the truth
    session = await _from_table(runtime, session_id)
    if session is not None and not session.logged_out:
        await _remember(runtime, session_id, session, token)
    return session


# One statement: the row is marked and the end announced in the same transaction (delivered on commit).
END = """
WITH ended AS (
    UPDATE sessions SET logged_out_at = now() WHERE id = %s AND logged_out_at IS NULL RETURNING logged_out_at
)
SELECT logged_out_at, pg_notify(%s, %s) FROM ended
"""
# The end undone, unless someone else's end replaced it.
UNDO = "UPDATE sessions SET logged_out_at = NULL WHERE id = %s AND logged_out_at = %s"


async def _evict(runtime: "Runtime", group: str) -> bool:
    """Drop the session from the shared cache and every process's near copy; False: Redis unreachable."""
    if runtime.near is not None:
        return await runtime.near.evict(group)
    if runtime.cache.shared:
        return await runtime.cache.invalidate(group)
    return True  # several workers' memory caches: nothing is cached, every check reads the table


async def end(runtime: "Runtime", session_id: str) -> None:
    """Log out: mark the row (announced on ``SESSIONS_CHANNEL`` to every process, for open streams)
    and drop the session from the cache and from every process's near copy.

    Raises :class:`ServiceUnavailable` (503) when the cache cannot be reached, with the row left valid
    (see the module's docstring), or ``DatabaseUnavailable`` when the table cannot be.
    """
    group = _group(session_id)
    if not await _evict(runtime, group):
        raise ServiceUnavailable("logout: the cache cannot be reached, the session was not ended")
    row = await runtime.db.fetchone(END, (uuid.UUID(session_id), SESSIONS_CHANNEL, session_id))
    if await _evict(runtime, group):
        return
    if row is not None:
        await runtime.db.execute(UNDO, (uuid.UUID(session_id), row["logged_out_at"]))
    raise ServiceUnavailable("logout: the cache could not be reached after the row was ended; the end was undone")


def session_id_from_header(handler: "BaseHandler", settings: "AuthSettings") -> str | None:
    """The 32-hex session id of ``<header>: <token type> <uuid>``; None without the header.

    Raises 401 ``auth-failed`` for a malformed value, another token type or a value that is not a UUID.
    """
    value = handler.request.headers.get(settings.header_name)
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != settings.token_type.lower():
        raise auth_failed()
    parsed = parse_uuid(parts[1])
    if parsed is None:
        raise auth_failed()
    return parsed.hex


async def identify(handler: "BaseHandler", settings: "AuthSettings") -> Identity | None:
    """Who the request's session belongs to; None without credentials, else a 401 or the identity.

    ``invalid-session-id`` for an unknown or logged-out session, ``session-id-expired`` once the
    session is older than its lifetime.
    """
    session_id = session_id_from_header(handler, settings)
    if session_id is None:
        return None
    return await check(handler.runtime, session_id, settings)


async def check(runtime: "Runtime", session_id: str, settings: "AuthSettings") -> Identity:
    """The identity of a valid 32-hex session id; 401 ``invalid-session-id`` or ``session-id-expired``."""
    session = await lookup(runtime, session_id)
    if session is None or session.logged_out:
        raise invalid_session_id()
    ends = session.ends_at(settings.token_lifetime)
    if time.time() >= ends:
        raise session_id_expired()
    return Identity(account_id=session.account_id, session_id=session_id, expires_at=ends)


async def identify_bare(runtime: "Runtime", session_id: str | None, settings: "AuthSettings") -> Identity:
    """The identity of a session id sent outside a header (a WebSocket frame); 401 as for the header."""
    parsed = parse_uuid(session_id) if isinstance(session_id, str) else None
    if parsed is None or len(session_id or "") != 32:
        raise auth_failed()
    return await check(runtime, parsed.hex, settings)


async def require_session(handler: "BaseHandler") -> None:
    """The auth request hook: every non-public request needs a valid session (401 otherwise)."""
    if handler.public:
        return
    if await handler.authenticate() is None:
        raise auth_failed()


# ---- cleaning the table -----------------------------------------------------------------------------

# Two statements, each a range scan of its own index (migration 0002) that stops after LIMIT rows; the
# ids go through an array so that the rows are then deleted by primary key (``id IN (...)`` is planned
# as a hash join over the whole table).
CLEAN_LOGGED_OUT = """
DELETE FROM sessions WHERE id = ANY(ARRAY(
    SELECT id FROM sessions WHERE logged_out_at IS NOT NULL ORDER BY logged_out_at
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED
))
"""
CLEAN_EXPIRED = """
DELETE FROM sessions WHERE id = ANY(ARRAY(
    SELECT id FROM sessions WHERE expires_at < now() - %(keep)s * interval '1 second' ORDER BY expires_at
    LIMIT %(batch)s FOR UPDATE SKIP LOCKED
))
"""


async def clean(runtime: "Runtime") -> int:
    """Delete ended rows, a batch at a time, until each kind comes back short; how many were deleted."""
    settings = runtime.config.auth
    params = {"batch": settings.cleanup_batch, "keep": settings.keep_expired}
    total = 0
    for statement in (CLEAN_LOGGED_OUT, CLEAN_EXPIRED):
        while not runtime.draining.is_set():
            deleted = await runtime.db.execute(statement, params)
            if deleted:
                log.debug("sessions cleanup: deleted %d row(s) in a batch of at most %d", deleted,
                          settings.cleanup_batch)
            total += deleted
            if deleted < settings.cleanup_batch:
                break
            await asyncio.sleep(BATCH_PAUSE)
    if total:
        log.info("sessions cleanup: deleted %d ended session row(s)", total)
    return total


async def clean_forever(runtime: "Runtime") -> None:
    """Clean every ``AUTH_SESSIONS_CLEANUP_INTERVAL`` seconds, the first time at a random point of the
    first interval (processes started together do not clean together); an outage waits for the next."""
    interval = runtime.config.auth.cleanup_interval
    await runtime.migrated.wait()
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            await clean(runtime)
        except Unavailable as exc:
            log.warning("sessions cleanup: %s; next attempt in %ds", str(exc).strip() or type(exc).__name__, interval)
        except Exception:  # pylint: disable=broad-exception-caught
            log.exception("sessions cleanup failed; next attempt in %ds", interval)
        await asyncio.sleep(interval)
