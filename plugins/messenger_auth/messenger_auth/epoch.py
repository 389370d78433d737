"""The sessions epoch: what lets a logout that cannot reach Redis still end its session everywhere.

One number in PostgreSQL (table ``sessions_epoch``, migration 0003), sealed into every cached session
entry (:mod:`.sessions`).  A logout whose eviction cannot reach Redis ends the row and bumps the epoch in
one transaction, which also announces the new value on ``SESSIONS_CHANNEL`` as ``epoch:<n>`` (beside the
session's own ``<hex32>`` notification, which streams and near caches already act on).  Every process
holds the epoch in memory (:class:`SessionsEpoch`) and refuses an entry sealed under an older one: the
table decides, and an active session is cached again under the new epoch.  Nothing the logging-out
process remembers is needed, so neither its restart nor Redis coming back later can bring the session back.

The value is trusted only while it is known to be current: the process's ``LISTEN`` connection is live
and the epoch was read from the table after that connection began (the read waits for the migrations).
When the connection drops, or until that read is done, :meth:`SessionsEpoch.current` is None and the
caller reads the table instead of Redis.  :meth:`SessionsEpoch.last` stays the newest value this process
ever learned, for when the table cannot be read either (see :func:`.sessions.lookup`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from messenger_core import Backoff, Unavailable

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime

log = logging.getLogger("messenger.auth")

PREFIX = "epoch:"  # a notification on SESSIONS_CHANNEL that carries the epoch, not a session id
READ = "SELECT epoch FROM sessions_epoch"
# The epoch moves on and the new value is announced (delivered to every process on commit).
BUMP = """
WITH bumped AS (UPDATE sessions_epoch SET epoch = epoch + 1 RETURNING epoch)
SELECT epoch, pg_notify(%(channel)s, %(prefix)s || epoch) FROM bumped
"""
HEARD_WAIT = 1.0  # most seconds a bumping logout waits for its own LISTEN connection to deliver the bump


def parse(payload: str) -> int | None:
    """The epoch an ``epoch:<n>`` notification announces; None for any other payload."""
    if not payload.startswith(PREFIX):
        return None
    try:
        return int(payload[len(PREFIX):])
    except ValueError:
        return None


class SessionsEpoch:
    """This process's view of the sessions epoch, kept current over the ``LISTEN`` connection.

    Wire it with ``runtime.pubsub.subscribe(SESSIONS_CHANNEL, epoch.heard)`` and
    ``runtime.pubsub.on_resync(epoch.resync)``.
    """

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.pubsub = runtime.pubsub
        self.last: int | None = None  # the newest epoch this process learned (None: none yet)
        self._known_on = -1  # the LISTEN connection (its number) on which ``last`` was read
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def current(self) -> int | None:
        """The epoch, if known to be current (LISTEN live, read since it began); None otherwise."""
        if not self.pubsub.live or self._known_on != self.pubsub.connections:
            return None
        return self.last

    def heard(self, payload: str) -> None:
        """A ``SESSIONS_CHANNEL`` callback: take an announced epoch."""
        epoch = parse(payload)
        if epoch is not None:
            self.learned(epoch)

    def learned(self, epoch: int) -> None:
        """The epoch is at least ``epoch`` (announced, read, or bumped by this process)."""
        if self.last is None or epoch > self.last:
            self.last = epoch
        for waiter in [w for w in self._waiters if w[0] <= epoch]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(None)

    def resync(self) -> None:
        """A resync callback: LISTEN was (re)established, notifications may have been missed: read again."""
        if self._reader is not None:
            self._reader.cancel()
        self._reader = asyncio.get_running_loop().create_task(self._read(self.pubsub.connections))

    async def _read(self, connection: int) -> None:
        await self.runtime.migrated.wait()  # the table exists
        backoff = Backoff(0.05, 2.0)
        while connection == self.pubsub.connections and self.pubsub.live:
            try:
                row = await self.runtime.db.fetchone(READ)
            except Unavailable as exc:
                log.debug("sessions epoch: cannot read it yet (%s)", exc)
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("sessions epoch: reading it failed; cached sessions are not used until it is read")
                await asyncio.sleep(backoff.next())
                continue
            if row is None:  # pragma: no cover - the migration inserts the row
                log.error("sessions epoch: the sessions_epoch table is empty; cached sessions are not used")
                return
            if connection == self.pubsub.connections:
                self.learned(int(row["epoch"]))  # notifications since LISTEN began may say more: max
                self._known_on = connection
            return

    async def announced(self, epoch: int) -> None:
        """Take ``epoch`` (committed by this process) and wait briefly for its notification to come back."""
        live = self.current() is not None
        heard_already = self.last is not None and self.last >= epoch
        if live and not heard_already:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (epoch, future)
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(future), HEARD_WAIT)
            except asyncio.TimeoutError:
                log.warning("sessions epoch: the bump to %d did not come back over LISTEN within %.1fs",
                            epoch, HEARD_WAIT)
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.learned(epoch)

    def close(self) -> None:
        """Stop a read in flight."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
