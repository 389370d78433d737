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

A logout is effective everywhere, also while Redis cannot be reached (:func:`end`).  With Redis
reachable it evicts, ends the row, and evicts again (a request may have cached the session in between).
When an eviction cannot reach Redis (this process is cut off from it, or Redis is down), the row is
ended and the *sessions epoch* bumped in one transaction (:mod:`.epoch`): every cached entry is sealed
under the epoch it was read at, every process learns the new one over ``LISTEN`` (the logout waits,
briefly, until its own connection delivered it) and refuses entries sealed under an older one, so the
table decides, for this session and, once, for every other cached one.  A process whose ``LISTEN``
connection is not live cannot know the epoch is current and reads the table instead of Redis (if the
table cannot be read either, PostgreSQL is down for it, and an entry sealed under the newest epoch it
learned still counts: a bump needs PostgreSQL).  Only a logout that cannot reach PostgreSQL fails:
503 ``database-unavailable``, the row untouched.

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

from messenger_core import SESSIONS_CHANNEL, Identity, Unavailable, parse_uuid

from . import epoch as epochs
from .errors import auth_failed, invalid_session_id, session_id_expired
from .state import KEY

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

    def encode(self, epoch: int) -> bytes:
        """The cached form, read under the sessions epoch ``epoch`` (only active sessions are cached)."""
        return json.dumps({"a": self.account_id, "c": self.created, "e": self.expires, "p": epoch}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "tuple[Session, int] | None":
        """Parse a cached entry: the session and the epoch it was read under; None when it is not one."""
        try:
            data = json.loads(raw)
            return cls(str(data["a"]), float(data["c"]), float(data["e"])), int(data["p"])
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
    await _remember(runtime, session_id.hex, session, token=0, epoch=_epoch_now(runtime))
    return session_id.hex


async def _remember(runtime: "Runtime", session_id: str, session: Session, token: int | None,
                    epoch: int | None) -> None:
    """Cache an active session for what is left of its life (only in a shared cache), sealed under
    ``epoch``: the sessions epoch as it was before the session was read (None: unknown, not cached)."""
    ttl = session.ends_at(runtime.config.auth.token_lifetime) - time.time()
    if token is None or epoch is None or ttl <= 0 or not runtime.cache.shared:
        return
    group = _group(session_id)
    await runtime.cache.group_set(group, FIELD, runtime.signer.seal(group, session.encode(epoch)), token, ttl)


def _tracker(runtime: "Runtime") -> "epochs.SessionsEpoch | None":
    """This process's sessions epoch (API processes with the Redis cache), else None."""
    state = runtime.state.get(KEY)
    return getattr(state, "epoch", None)


def _epoch_now(runtime: "Runtime") -> int | None:
    """The sessions epoch cached entries must carry now; None when it is not known to be current.

    Only Redis can miss an eviction; a memory cache that is shared is one process's own, which its logout
    always evicts: there the epoch is always 0.
    """
    if runtime.config.cache_type != "redis":
        return 0
    tracker = _tracker(runtime)
    return tracker.current() if tracker is not None else None


async def _from_table(runtime: "Runtime", session_id: str) -> Session | None:
    row: dict[str, Any] | None = await runtime.db.fetchone(
        "SELECT account_id, created_at, expires_at, logged_out_at FROM sessions WHERE id = %s",
        (uuid.UUID(session_id),))
    if row is None:
        return None
    return Session(row["account_id"].hex, row["created_at"].timestamp(), row["expires_at"].timestamp(),
                   row["logged_out_at"] is not None)


async def lookup(runtime: "Runtime", session_id: str) -> Session | None:
    """The session: from the near cache, else the cache, else the table (then cached if active).

    A cached entry counts only if sealed under the current sessions epoch (or a newer one, which another
    process read after a bump this one has not heard of yet); while the epoch is not known to be current,
    the table decides (:func:`_unsure`).
    """
    if not runtime.cache.shared:
        return await _from_table(runtime, session_id)
    epoch = _epoch_now(runtime)
    if epoch is None:
        return await _unsure(runtime, session_id)
    group = _group(session_id)
    near = runtime.near
    if near is None:
        return await _from_cache(runtime, session_id, group, epoch)
    held: tuple[int, Session] | None = near.get(group)
    if held is not None and held[0] >= epoch:
        return held[1]
    with near.reading(group) as read:
        session = await _from_cache(runtime, session_id, group, epoch)
        if session is not None and not session.logged_out:
            read.keep((epoch, session), session.ends_at(runtime.config.auth.token_lifetime) - time.time())
    return session


def _cached(runtime: "Runtime", group: str, raw: bytes | None) -> tuple[Session, int] | None:
    """A cached entry opened: the session and its epoch; None when absent or not sealed by this service."""
    if raw is None:
        return None
    opened = runtime.signer.open(group, raw)  # None: not written by this service (or altered)
    return Session.decode(opened) if opened is not None else None


async def _from_cache(runtime: "Runtime", session_id: str, group: str, epoch: int) -> Session | None:
    """The session from the shared cache if sealed under ``epoch`` or later, else from the table (then
    cached, under ``epoch``, if active)."""
    cache = runtime.cache
    cached = _cached(runtime, group, await cache.group_get(group, FIELD))
    if cached is not None and cached[1] >= epoch:
        return cached[0]
    token = await cache.group_token(group)  # taken before reading the truth
    session = await _from_table(runtime, session_id)
    if session is not None and not session.logged_out:
        await _remember(runtime, session_id, session, token, epoch)
    return session


async def _unsure(runtime: "Runtime", session_id: str) -> Session | None:
    """The session while this process cannot tell whether the epoch moved (its LISTEN connection is not
    live): from the table, nothing cached.

    If the table cannot be read either, PostgreSQL is away for this process, and a cached entry sealed
    under the newest epoch this process learned still counts (no logout can bump the epoch without
    PostgreSQL); the limit: another process that reaches PostgreSQL but not Redis, at the same time.
    """
    try:
        return await _from_table(runtime, session_id)
    except Unavailable:
        tracker = _tracker(runtime)
        last = tracker.last if tracker is not None else None
        if last is None:
            raise
        group = _group(session_id)
        held: tuple[int, Session] | None = runtime.near.get(group) if runtime.near is not None else None
        if held is not None and held[0] >= last:
            return held[1]
        cached = _cached(runtime, group, await runtime.cache.group_get(group, FIELD))
        if cached is not None and cached[1] >= last:
            return cached[0]
        raise


# One statement: the row is marked and the end announced in the same transaction (delivered on commit).
END = """
WITH ended AS (
    UPDATE sessions SET logged_out_at = now() WHERE id = %(id)s AND logged_out_at IS NULL RETURNING logged_out_at
)
SELECT logged_out_at, pg_notify(%(channel)s, %(session)s) FROM ended
"""
# The same, and the sessions epoch bumped and announced, all or nothing (a logout that cannot reach
# Redis).  The epoch moves on even if the row was ended already: some process still trusted an entry.
END_AND_BUMP = """
WITH ended AS (
    UPDATE sessions SET logged_out_at = now() WHERE id = %(id)s AND logged_out_at IS NULL RETURNING id
), bumped AS (
    UPDATE sessions_epoch SET epoch = epoch + 1 RETURNING epoch
)
SELECT epoch, pg_notify(%(channel)s, %(prefix)s || epoch), pg_notify(%(channel)s, %(session)s) FROM bumped
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
    """Log out: mark the row (announced on ``SESSIONS_CHANNEL`` to every process, for open streams
    and near copies) and drop the session from the cache and from every process's near copy; when
    Redis cannot be reached, bump the sessions epoch with the row's end instead (module docstring).

    Raises ``DatabaseUnavailable`` (503) when the table cannot be reached, the row then left valid.
    """
    group = _group(session_id)
    params = {"id": uuid.UUID(session_id), "channel": SESSIONS_CHANNEL, "session": session_id,
              "prefix": epochs.PREFIX}
    if not await _evict(runtime, group):
        row = await runtime.db.fetchone(END_AND_BUMP, params)
        assert row is not None  # the epoch's row is there from the migration on
        log.info("logout: redis unreachable, the sessions epoch moved on to %d", row["epoch"])
        await _announced(runtime, int(row["epoch"]))
        return
    row = await runtime.db.fetchone(END, params)
    if await _evict(runtime, group):
        return
    # Redis went away between the two evictions: a request may have cached the session in between
    try:
        bumped = await runtime.db.fetchone(epochs.BUMP, {"channel": SESSIONS_CHANNEL, "prefix": epochs.PREFIX})
    except Unavailable:
        if row is not None:  # and PostgreSQL too: undo the end (if that fails as well, this is half done)
            await runtime.db.execute(UNDO, (uuid.UUID(session_id), row["logged_out_at"]))
        raise
    assert bumped is not None
    log.info("logout: redis went away, the sessions epoch moved on to %d", bumped["epoch"])
    await _announced(runtime, int(bumped["epoch"]))


async def _announced(runtime: "Runtime", epoch: int) -> None:
    """This process committed ``epoch``: take it, and wait briefly until its LISTEN delivered it."""
    tracker = _tracker(runtime)
    if tracker is not None:
        await tracker.announced(epoch)


def forget_ended(runtime: "Runtime", payload: str) -> None:
    """A ``SESSIONS_CHANNEL`` callback: drop an ended session's near copy (an ``epoch:<n>`` is not one)."""
    if runtime.near is not None and len(payload) == 32 and parse_uuid(payload) is not None:
        runtime.near.forget(_group(payload))


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
