"""PostgreSQL: an async psycopg 3 pool that turns outages into ``DatabaseUnavailable``, and migrations.

Every query of a request goes through :class:`Database`; when PostgreSQL cannot be reached the
caller gets :class:`~messenger_core.errors.DatabaseUnavailable` (answered 503) within ``DB_TIMEOUT``
seconds, never a hang or a 500, and the log says once when the database went away and once when it came back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import select
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .errors import DatabaseUnavailable, StartupError
from .health import Availability
from .settings import Config

log = logging.getLogger("messenger.db")

#: Errors that mean "PostgreSQL is unreachable", as opposed to a bad query.
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError)
#: How every connection of the service is opened (autocommit, rows as dicts, dead peers found fast).
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "keepalives": 1,
                                     "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}
#: Most seconds /ping_db waits for PostgreSQL (a readiness probe answers within a few hundred ms).
PING_TIMEOUT = 0.5
#: Most seconds one readiness probe runs before it gives up (callers stopped waiting long before).
PROBE_LIMIT = 2.0
#: Seconds a query whose connection was shut down at its deadline may still take to fail before the
#: block is cancelled anyway (it fails at once: this is a safety net).
ABORT_GRACE = 1.0
#: Most seconds the background cancel of a query abandoned at its deadline runs.
CANCEL_LIMIT = 5.0
MIGRATION_LOCK = 7_214_001  # pg_advisory_lock key: one migrator at a time across processes


class Database:
    """The process's connection pool (opened after fork) and the availability state."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.timeout = config.db_timeout
        self.health = Availability("database", log, down="went away")
        self.ready = False  # migrations applied and pool open
        self._checker: asyncio.Future[None] | None = None
        self._lanes: list[Lane] = []
        self._ping_conn: psycopg.AsyncConnection | None = None
        self._ping: asyncio.Future[bool] | None = None
        self._ping_started = 0.0
        self.pool = AsyncConnectionPool(
            config.postgres_conninfo,
            min_size=1,
            max_size=config.pool_size,
            open=False,
            timeout=self.timeout,
            reconnect_timeout=30.0,
            kwargs=dict(CONNECTION_KWARGS),
            name="messenger",
        )

    async def open(self) -> None:
        """Start the pool (after migrations created the database) without waiting for it."""
        await self.pool.open(wait=False)
        self.ready = True

    async def close(self) -> None:
        """Close every connection."""
        if self.ready:
            self.ready = False
            for lane in self._lanes:
                await lane.release()
            if self._ping is not None and not self._ping.done():
                self._ping.cancel()  # a probe stuck on a silent network: not waited for
                await asyncio.wait({self._ping}, timeout=PING_TIMEOUT)
            if self._ping_conn is not None:
                await self._ping_conn.close()
            await self.pool.close(timeout=2.0)

    def lane(self) -> "Lane":
        """A :class:`Lane` to this database (closed with the pool)."""
        lane = Lane(self)
        self._lanes.append(lane)
        return lane

    @property
    def available(self) -> bool:
        """Whether the last call to PostgreSQL went through."""
        return self.health.available

    def went_away(self, exc: BaseException) -> None:
        """Record a call that found PostgreSQL unreachable."""
        if self.health.failed(exc):
            # drop the pooled connections the outage broke, so that once PostgreSQL is back no
            # request is handed a dead one (the pool reconnects in the background)
            if self._checker is None or self._checker.done():
                self._checker = asyncio.ensure_future(self._check_pool())

    async def _check_pool(self) -> None:
        try:
            await self.pool.check()
        except Exception:  # pylint: disable=broad-exception-caught
            log.debug("pool check failed", exc_info=True)

    def came_back(self) -> None:
        """Record a call that went through."""
        self.health.succeeded()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection (autocommit, dict rows); outages raise ``DatabaseUnavailable``.

        ``timeout`` bounds the whole block (default ``DB_TIMEOUT``), a stalled network included: see
        :class:`Deadline`.
        """
        if not self.ready:
            raise DatabaseUnavailable("not ready")
        try:
            async with Deadline(timeout or self.timeout) as deadline:
                conn = deadline.conn = await self._checkout()
                try:
                    yield conn
                finally:
                    await self.pool.putconn(conn)  # a connection the deadline shut down is discarded
        except UNAVAILABLE as exc:
            self.went_away(exc)
            raise DatabaseUnavailable(str(exc)) from exc
        self.came_back()

    async def _checkout(self) -> psycopg.AsyncConnection:
        """A pooled connection that the server has not closed.

        After PostgreSQL restarted (or the network dropped), a worker that served nothing meanwhile
        still holds its old connections; each shows input waiting on its socket (EOF, a reset or
        the server's termination notice).  Such a connection is closed and given back (the pool
        discards it and opens another), and the next one is taken, without the pool's own check
        loop, which sleeps a backoff second after every failed check.
        """
        for _ in range(self.config.pool_size):
            conn = await self.pool.getconn()
            if not _closed_by_server(conn):
                return conn
            await conn.close()
            await self.pool.putconn(conn)
        return await self.pool.getconn()

    @asynccontextmanager
    async def transaction(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection inside one transaction, committed when the block ends without error."""
        async with self.connection(timeout) as conn:  # pylint: disable=contextmanager-generator-missing-cleanup
            async with conn.transaction():
                yield conn

    async def fetchone(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        """First row of a query, or None."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def fetchall(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def execute(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run a statement; the number of rows it touched."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    async def ping(self, timeout: float = PING_TIMEOUT) -> bool:
        """``SELECT 1`` on a connection of its own; an answer within ``timeout``; False until ready.

        The probe does not queue behind a busy pool: it keeps one connection beside it.  It runs as a
        background task that the callers only wait for: concurrent callers share one round trip, and
        none waits longer than its ``timeout`` (``/ping_db``: ``PING_TIMEOUT``; ``/health``:
        ``HEALTH_TIMEOUT``) after that probe started, so while a probe is stuck (a silent network: no
        answer, no reset) every caller is told "not ready" at once instead of starting another one.  The
        probe itself gives up after :data:`PROBE_LIMIT` (its connection shut down by a
        :class:`Deadline`), so a ``timeout`` above that waits no longer.  After an outage the pool must
        serve again before the probe says ready.
        """
        if not self.ready:
            return False
        loop = asyncio.get_running_loop()
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self._ping_once())
            self._ping.add_done_callback(_retrieved)  # its end may come when no caller waits any more
            self._ping_started = loop.time()
        probe = self._ping
        left = self._ping_started + timeout - loop.time()
        if left > 0 and not probe.done():
            await asyncio.wait({probe}, timeout=left)
        if not probe.done():
            return False
        return not probe.cancelled() and probe.exception() is None and probe.result()

    async def _ping_once(self) -> bool:
        try:
            async with Deadline(PROBE_LIMIT) as deadline:
                if self._ping_conn is None or self._ping_conn.closed:
                    self._ping_conn = await psycopg.AsyncConnection.connect(self.config.postgres_conninfo,
                                                                            **CONNECTION_KWARGS)
                deadline.conn = self._ping_conn
                await self._ping_conn.execute("SELECT 1")
                if not self.available:
                    # after an outage the pool may still be reconnecting: not ready until it serves
                    # again (within what is left of the probe's time)
                    try:
                        async with self.connection():
                            pass
                    except DatabaseUnavailable:
                        return False
        except UNAVAILABLE as exc:
            conn, self._ping_conn = self._ping_conn, None
            if conn is not None:
                await conn.close()
            self.went_away(exc)
            return False
        self.came_back()
        return True


def _retrieved(task: "asyncio.Future[Any]") -> None:
    """Mark a background task's outcome as seen (asyncio logs an exception nobody asked for)."""
    if not task.cancelled():
        task.exception()


def _closed_by_server(conn: psycopg.AsyncConnection) -> bool:
    """Whether an idle connection is closed, broken, or has input waiting (a notice that the server
    closed it, an EOF, a reset): an idle healthy connection has nothing to read."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


class Deadline:
    """``asyncio.timeout`` for a block that queries one connection, which a stalled network cannot stretch.

    When ``asyncio.timeout`` cancels a task inside a query, psycopg first cancels the query on the
    server (it connects anew and sends the cancel request, up to 5 s) and then waits up to 5 s more
    for the query to end, all inside the cancelled task: on a silent partition a request took
    ``DB_TIMEOUT`` plus 10 s.  So at the deadline, while ``conn`` (set by the block once it has one)
    is inside a transaction or a query, its socket is shut down instead: the query fails at once, the
    connection is broken (the pool discards it; a Lane or the probe opens another) and the block
    raises ``TimeoutError`` as with ``asyncio.timeout``.  The server-side cancel of a query in flight
    still goes out, from a background task bounded by :data:`CANCEL_LIMIT`, so a slow (not stalled)
    server does not go on running a query nobody waits for.  An idle connection, or none, is left
    alone and the block is cancelled, exactly as ``asyncio.timeout`` does.
    """

    _cancels: set["asyncio.Task[None]"] = set()  # background cancels in flight (asyncio keeps weak refs)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.conn: psycopg.AsyncConnection | None = None
        self.expired = False
        self._timeout = asyncio.timeout(None)
        self._handle: asyncio.TimerHandle | None = None
        self._shut: psycopg.AsyncConnection | None = None  # the connection shut down at the deadline

    async def __aenter__(self) -> "Deadline":
        await self._timeout.__aenter__()
        self._handle = asyncio.get_running_loop().call_later(self.seconds, self._expire)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
        if self._shut is not None and not self._shut.closed:
            # its answer won the race against the shutdown: the connection is still not reusable
            await self._shut.close()
        result = await self._timeout.__aexit__(exc_type, exc, tb)  # TimeoutError once it cancelled the block
        if self.expired and isinstance(exc, psycopg.OperationalError):
            # the deadline broke the connection under the query: say so, as asyncio.timeout would
            raise TimeoutError(f"no answer within {self.seconds:g}s") from exc
        return result

    def _expire(self) -> None:
        self.expired = True
        loop = asyncio.get_running_loop()
        conn = self.conn
        if conn is None or conn.closed or conn.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            self._timeout.reschedule(loop.time())  # nothing in flight on it: cancel the block now
            return
        if conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            self._cancel_on_server(conn)
            # the query fails as soon as psycopg reads the EOF; cancelling the task now would start
            # psycopg's own cancel instead
            self._timeout.reschedule(loop.time() + ABORT_GRACE)
        else:  # inside a transaction, between queries: the rollback on the way out must not hang
            self._timeout.reschedule(loop.time())
        _shut_down(conn)
        self._shut = conn

    @classmethod
    def _cancel_on_server(cls, conn: psycopg.AsyncConnection) -> None:
        try:
            cancel = conn.pgconn.cancel_conn()  # libpq >= 17: a non-blocking cancel connection
            cancel.start()
        except (psycopg.Error, AttributeError) as exc:
            log.debug("no background cancel: %s", exc)
            return
        task = asyncio.ensure_future(_send_cancel(cancel))
        cls._cancels.add(task)
        task.add_done_callback(cls._cancels.discard)


def _shut_down(conn: psycopg.AsyncConnection) -> None:
    """End a connection's TCP stream in both directions without closing its descriptor (which the event
    loop may be watching): whatever waits on it reads EOF at once."""
    try:
        with socket.fromfd(conn.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as sock:  # a dup
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error) as exc:
        log.debug("could not shut down a connection at its deadline: %s", exc)


async def _send_cancel(cancel: pq.PGcancelConn) -> None:
    """Drive a started libpq cancel connection to its end (at most :data:`CANCEL_LIMIT` seconds)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(CANCEL_LIMIT):
            while True:
                status = cancel.poll()
                if status == pq.PollingStatus.OK:
                    return
                if status == pq.PollingStatus.FAILED:
                    log.debug("background cancel failed: %s", cancel.get_error_message())
                    return
                await _ready(loop, cancel.socket, writing=status == pq.PollingStatus.WRITING)
    except (TimeoutError, OSError, psycopg.Error) as exc:
        log.debug("background cancel gave up: %r", exc)
    finally:
        cancel.finish()


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, writing: bool) -> None:
    """Wait until ``fd`` can be read (or written)."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class Lane:
    """A connection of its own for a caller that runs one statement at a time (a ``Batcher``'s flushes).

    Taking a connection from psycopg's pool and giving it back costs about as much CPU as a short
    query (65 us against 125 us for a batch insert, measured in bench/README.md), so a sequential
    caller keeps one.  It is opened beside the pool, not taken from it: a connection held out of the
    pool could be the only live one right after an outage, and every other request would then wait
    for the pool's reconnection backoff.  So each lane adds one connection to the process's
    ``POOL_SIZE``.  Outages are handled as in :meth:`Database.connection`: ``DatabaseUnavailable``
    within ``DB_TIMEOUT`` (a :class:`Deadline`); the connection is closed after any error and the next call opens a new
    one.  A call made while the lane is busy (not by design) goes through the pool.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: psycopg.AsyncConnection | None = None
        self._busy = False

    async def fetchall(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query, on the lane's connection."""
        db = self.db
        if self._busy or not db.ready:
            return await db.fetchall(query, params)
        self._busy = True
        try:
            async with Deadline(db.timeout) as deadline:
                if self._conn is not None and _closed_by_server(self._conn):
                    await self.release()  # from before an outage or a restart: never let it fail a call
                if self._conn is None:
                    self._conn = await psycopg.AsyncConnection.connect(db.config.postgres_conninfo,
                                                                       **CONNECTION_KWARGS)
                deadline.conn = self._conn
                cur = await self._conn.execute(query, params)
                rows = await cur.fetchall()
        except UNAVAILABLE as exc:
            await self.release()
            db.went_away(exc)
            raise DatabaseUnavailable(str(exc)) from exc
        except BaseException:
            await self.release()
            raise
        finally:
            self._busy = False
        db.came_back()
        return rows

    async def release(self) -> None:
        """Close the connection (the next call opens another)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


# ---- migrations -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Migrations:
    """What a plugin returns from ``messenger_migrations``.

    ``package`` is an importable package holding ``NNNN_name.sql`` files, each with a
    ``-- migrate:up`` part and a ``-- migrate:down`` part.  ``after`` names plugins whose
    migrations must be applied first (for example an index on another plugin's table).
    """

    plugin: str
    package: str
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of one plugin."""

    plugin: str
    version: int
    name: str
    up: str
    down: str


_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MARK = re.compile(r"^--\s*migrate:(up|down)\s*$", re.MULTILINE)


def load_migrations(spec: Migrations) -> list[Migration]:
    """Read and parse a plugin's SQL files, ordered by version."""
    found = []
    for entry in resources.files(spec.package).iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _MARK.split(text)
        sections = dict(zip(parts[1::2], parts[2::2]))
        if "up" not in sections or "down" not in sections:
            raise StartupError(f"{spec.plugin}/{entry.name}: needs '-- migrate:up' and '-- migrate:down'")
        found.append(Migration(spec.plugin, int(match.group(1)), match.group(2),
                               sections["up"].strip(), sections["down"].strip()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StartupError(f"{spec.plugin}: two migrations share a version number")
    return found


def order_specs(specs: Iterable[Migrations]) -> list[Migrations]:
    """Dependency order (``after``), then by name; unknown dependencies or cycles stop start-up."""
    by_name = {spec.plugin: spec for spec in specs}
    ordered: list[Migrations] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "busy":
            raise StartupError(f"migration dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in by_name:
            raise StartupError(f"plugin {chain[-1]!r} needs migrations of {name!r}, which is not enabled")
        state[name] = "busy"
        for dep in by_name[name].after:
            visit(dep, chain + (name,))
        state[name] = "done"
        ordered.append(by_name[name])

    for name in sorted(by_name):
        visit(name, ())
    return ordered


async def connect_or_create(config: Config) -> psycopg.AsyncConnection:
    """Connect to the configured database, creating it first when it is missing and we may."""
    try:
        return await psycopg.AsyncConnection.connect(config.postgres_conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        if 'does not exist' not in str(exc) or f'"{config.postgres_db}"' not in str(exc):
            raise
    admin_info = config.postgres_conninfo.replace(
        f"dbname={_quoted(config.postgres_db)}", "dbname='postgres'")
    async with await psycopg.AsyncConnection.connect(admin_info, autocommit=True) as admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config.postgres_db)))
            log.info("created database %s", config.postgres_db)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it at the same moment
    return await psycopg.AsyncConnection.connect(config.postgres_conninfo, autocommit=True)


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    plugin     text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plugin, version)
)"""


async def _applied(conn: psycopg.AsyncConnection) -> set[tuple[str, int]]:
    cur = await conn.execute("SELECT plugin, version FROM schema_migrations")
    return {(row[0], row[1]) for row in await cur.fetchall()}


async def migrate_up(config: Config, specs: Iterable[Migrations]) -> list[str]:
    """Apply every pending migration, each in its own transaction; names of those applied.

    Safe to run on every start and from several processes at once (an advisory lock serializes
    them, and each sees what the others applied).
    """
    done = []
    async with await connect_or_create(config) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await conn.execute(_TABLE)
            applied = await _applied(conn)
            for spec in order_specs(specs):
                for mig in load_migrations(spec):
                    if (mig.plugin, mig.version) in applied:
                        continue
                    async with conn.transaction():
                        await conn.execute(mig.up)
                        await conn.execute(
                            "INSERT INTO schema_migrations (plugin, version, name) VALUES (%s, %s, %s)",
                            (mig.plugin, mig.version, mig.name))
                    label = f"{mig.plugin}:{mig.version:04d}_{mig.name}"
                    log.info("applied migration %s", label)
                    done.append(label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return done


async def migrate_down(config: Config, specs: Iterable[Migrations], plugin: str,
                       to_version: int = 0) -> list[str]:
    """Roll back ``plugin``'s applied migrations newer than ``to_version``, newest first.

    Rolling a plugin back completely is refused while an enabled plugin that depends on it
    (``after``) still has migrations applied.
    """
    specs = list(specs)
    by_name = {spec.plugin: spec for spec in specs}
    if plugin not in by_name:
        raise StartupError(f"no enabled plugin {plugin!r} has migrations")
    done = []
    async with await connect_or_create(config) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await conn.execute(_TABLE)
            applied = await _applied(conn)
            if to_version == 0:
                users = sorted({p for p, _ in applied
                                if p != plugin and p in by_name and plugin in by_name[p].after})
                if users:
                    raise StartupError(f"roll back {', '.join(users)} first: it depends on {plugin}")
            for mig in reversed(load_migrations(by_name[plugin])):
                if mig.version <= to_version or (plugin, mig.version) not in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(mig.down)
                    await conn.execute("DELETE FROM schema_migrations WHERE plugin = %s AND version = %s",
                                       (plugin, mig.version))
                label = f"{plugin}:{mig.version:04d}_{mig.name}"
                log.info("rolled back migration %s", label)
                done.append(label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return done
