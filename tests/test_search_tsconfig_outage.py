"""The start-up stemming check (``messenger_search.tsconfig.sync_when_migrated``) is a background task: a
database outage while it runs is logged once as a warning and waited out, the task ends cleanly once
PostgreSQL is back, and asyncio never has an exception of it that nobody retrieved."""

from __future__ import annotations

import logging

import psycopg
import pytest

from messenger_search.state import KEY
from messenger_search.tsconfig import SYNC_LOCK
from search_support import search_server
from support import TcpProxy, conninfo, poll

LOGGER = "messenger.search.tsconfig"


async def test_a_database_cut_during_the_stemming_check_is_logged_once_and_waited_out(
        env: dict[str, str], database: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    proxy = TcpProxy(5432)
    # the check takes this lock first: holding it keeps the check inside its transaction until the cut
    holder = await psycopg.AsyncConnection.connect(conninfo(database))
    try:
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (SYNC_LOCK,))
        async with search_server({**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}"}) as srv:
            check = srv.runtime.state[KEY].background
            assert check is not None

            async def waiting_for_the_lock() -> bool:
                cur = await holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                           "AND objid = %s AND NOT granted", (SYNC_LOCK,))
                row = await cur.fetchone()
                return row is not None and row[0] == 1
            await poll(waiting_for_the_lock, timeout=15)
            proxy.cut()

            def records(level: int) -> list[logging.LogRecord]:
                return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]

            async def noticed() -> bool:
                return check.done() or bool(records(logging.WARNING))
            await poll(noticed, timeout=15)
            assert not check.done(), f"the check ended on the outage: {check}"
            proxy.restore()
            await holder.commit()  # the lock is free: the check can run again

            async def finished() -> bool:
                return check.done()
            await poll(finished, timeout=30)
            assert not check.cancelled() and check.exception() is None
            assert len(records(logging.WARNING)) == 1, caplog.text  # once per outage, not once per try
            assert not records(logging.ERROR), caplog.text
            assert (await srv.client.get("/ping_db")).status == 200
    finally:
        await holder.close()
        proxy.close()
    assert "never retrieved" not in caplog.text
