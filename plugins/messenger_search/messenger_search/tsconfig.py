"""Keep the plugin's text-search configuration in step with ``SEARCH_TS_CONFIG``.

The index expression and the query name the constant configuration ``messenger_search``
(:data:`messenger_search.query.TS_CONFIG`), so they agree by construction.  What that
configuration *does* comes from ``SEARCH_TS_CONFIG`` (default ``pg_catalog.russian``): at start,
once migrations are applied, :func:`sync` compares the two token-to-dictionary mappings and, when
they differ, copies the source's mappings and rebuilds the GiST index in the same transaction.
The rebuild blocks writes to ``messages`` while it runs, so change the setting in a quiet moment.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg import sql

from messenger_core import ApiError, Backoff, Database, Unavailable

from .query import TS_CONFIG

log = logging.getLogger("messenger.search.tsconfig")

INDEX = "messages_text_search_idx"
SYNC_LOCK = 7_214_505  # pg_advisory_xact_lock key: one process re-maps at a time
REINDEX_TIMEOUT = 3600.0
RETRY_FIRST = 0.5  # seconds between tries while the database is away: 0.5, 1, 2, ... up to RETRY_CAP
RETRY_CAP = 10.0

_MAPPING = """
SELECT t.alias, array_agg(d.dictname::text ORDER BY m.mapseqno) AS dicts,
       array_agg(ns.nspname::text ORDER BY m.mapseqno) AS schemas
FROM pg_ts_config_map m
JOIN pg_ts_config c ON c.oid = m.mapcfg
JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
JOIN pg_ts_dict d ON d.oid = m.mapdict
JOIN pg_namespace ns ON ns.oid = d.dictnamespace
WHERE m.mapcfg = %s::regconfig
GROUP BY t.alias
"""


async def _mapping(conn: psycopg.AsyncConnection, config: str) -> dict[str, tuple[tuple[str, str], ...]]:
    cur = await conn.execute(_MAPPING, (config,))
    return {row["alias"]: tuple(zip(row["schemas"], row["dicts"])) for row in await cur.fetchall()}


async def _parser(conn: psycopg.AsyncConnection, config: str) -> int:
    cur = await conn.execute("SELECT cfgparser::int AS parser FROM pg_ts_config WHERE oid = %s::regconfig",
                             (config,))
    row = await cur.fetchone()
    return int(row["parser"]) if row else -1


async def sync(db: Database, source: str) -> bool:
    """Copy ``source``'s mappings into ``messenger_search`` and re-index if they differ; True if it did."""
    async with db.transaction(timeout=REINDEX_TIMEOUT) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SYNC_LOCK,))
        wanted = await _mapping(conn, source)
        current = await _mapping(conn, TS_CONFIG)
        if wanted == current:
            return False
        if await _parser(conn, source) != await _parser(conn, TS_CONFIG):
            log.error("SEARCH_TS_CONFIG=%s uses another parser than %s; keeping the current stemming",
                      source, TS_CONFIG)
            return False
        target = sql.Identifier(TS_CONFIG)
        for alias in sorted(current):
            await conn.execute(sql.SQL("ALTER TEXT SEARCH CONFIGURATION {} DROP MAPPING FOR {}").format(
                target, sql.Identifier(alias)))
        for alias, dicts in sorted(wanted.items()):
            await conn.execute(sql.SQL("ALTER TEXT SEARCH CONFIGURATION {} ADD MAPPING FOR {} WITH {}").format(
                target, sql.Identifier(alias), sql.SQL(", ").join(sql.Identifier(*d) for d in dicts)))
        await conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier(INDEX)))
    log.warning("text-search configuration %s now copies %s; index %s rebuilt", TS_CONFIG, source, INDEX)
    return True


async def sync_when_migrated(migrated: asyncio.Event, db: Database, source: str) -> None:
    """Background start-up step: wait for the migrations, then :func:`sync`.

    Nothing escapes it: a database outage is a warning, once, and waited out on the core's
    :class:`~messenger_core.Backoff` (``DatabaseUnavailable`` is an ``Unavailable``, not an
    ``ApiError``: it used to end the task with an exception nobody retrieved); a setting PostgreSQL
    refuses or another database error is an error, once, and the current stemming stays.
    """
    await migrated.wait()
    backoff = Backoff(RETRY_FIRST, RETRY_CAP)
    waited = False
    while True:
        try:
            await sync(db, source)
        except Unavailable as exc:
            if not waited:
                log.warning("could not check the text-search configuration (%s: %s); trying again until "
                            "the database answers", exc.code, str(exc).strip())
                waited = True
            await asyncio.sleep(backoff.next())
            continue
        except psycopg.errors.UndefinedObject as exc:
            log.error("SEARCH_TS_CONFIG=%s: %s; keeping the current stemming", source, str(exc).strip())
        except (ApiError, TimeoutError, psycopg.Error) as exc:
            log.error("could not check the text-search configuration: %s", str(exc).strip())
        else:
            if waited:
                log.info("text-search configuration checked, the database is back")
        return
