"""The full-text query: newest matches first, within a deadline, keeping what it found.

The document expression :data:`DOCUMENT` is, character for character, the expression of the GiST
index created by migration ``0001_text_search`` (``to_tsvector('messenger_search', text)``) and
the query side uses the same configuration, so the planner can answer ``@@`` from that index.
The configuration name is a constant: what it stems is changed through ``SEARCH_TS_CONFIG``
(see :mod:`messenger_search.tsconfig`), never by pointing the query at another configuration.

Matching rows come through a server-side cursor in batches; each FETCH runs under a
``statement_timeout`` of the time left, so the task stops at ``SEARCH_TIMEOUT`` with the newest
matches of what it had scanned.  Only ``(created_at, id)`` travel in that phase; the texts of
the kept matches are read afterwards by primary key, newest first, only as many as fit in
``SEARCH_MAX_BYTES`` (counted on the texts' bytes in SQL, then exactly on the JSON), so neither
the worker nor a results page ever holds a task's worth of six-fold escaped long messages.
Deleted messages (``deleted_at``, see ``messenger_chats.api``) are left out in both phases, so a
task started after a delete never shows it and one started after an edit matches and shows the
new text.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import psycopg

from messenger_core import Database

log = logging.getLogger("messenger.search.query")

TS_CONFIG = "messenger_search"
DOCUMENT = f"to_tsvector('{TS_CONFIG}', text)"
BATCH = 200  # rows per FETCH: a FETCH cut by the deadline loses at most this many

#: The matching query (parameters: ``chats`` uuid[], ``query`` text).  Tests EXPLAIN it.
MATCH_SQL = f"""
SELECT created_at, id FROM messages
WHERE chat_id = ANY(%(chats)s::uuid[])
  AND deleted_at IS NULL
  AND {DOCUMENT} @@ websearch_to_tsquery('{TS_CONFIG}', %(query)s)
"""

# The kept matches' rows, newest first, stopping once the texts before a row already hold
# ``max_bytes`` bytes (a result's JSON is never shorter than its UTF-8 text plus ``overhead``), so a
# worker never loads much more than a task's bound; the newest always comes.
ROWS_SQL = """
SELECT id, chat_id, member_id, text, created_at FROM (
    SELECT id, chat_id, member_id, text, created_at,
           sum(octet_length(text) + %(overhead)s) OVER (ORDER BY created_at DESC, id DESC ROWS UNBOUNDED PRECEDING)
               - octet_length(text) - %(overhead)s AS before
    FROM messages
    WHERE id = ANY(%(ids)s::uuid[]) AND deleted_at IS NULL
) AS sized
WHERE before < %(max_bytes)s
ORDER BY created_at DESC, id DESC
"""
#: Bytes of a result's JSON besides its text (three ids, the timestamp, keys, punctuation): 197, rounded down.
RESULT_OVERHEAD = 192
#: Bytes of a results page besides its results: ``{"messages":[],"next":{"iterator":"123456789"}}``.
PAGE_ENVELOPE = 48


def result_json(row: dict[str, Any]) -> bytes:
    """One result as the API shows it: message_id, chat_id, user_id, text, created_at (UTC, as chats does)."""
    return json.dumps({"message_id": row["id"].hex, "chat_id": row["chat_id"].hex,
                       "user_id": row["member_id"].hex, "text": row["text"],
                       "created_at": row["created_at"].astimezone(timezone.utc).isoformat(timespec="microseconds")},
                      ensure_ascii=False, separators=(",", ":")).encode()


async def _scan(conn: psycopg.AsyncConnection, chats: Sequence[UUID], query: str, limit: int,
                deadline: float) -> tuple[list[tuple[datetime, UUID]], bool]:
    """The ``limit`` newest matches seen before the deadline; True when the scan was complete."""
    loop = asyncio.get_running_loop()
    best: list[tuple[datetime, UUID]] = []  # min-heap: the oldest kept match on top
    try:
        async with conn.transaction():
            # the cursor is read to the end: plan for all rows, not the first 10 %
            await conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            async with conn.cursor(name="search_matches") as cur:
                first = True
                while True:
                    left = deadline - loop.time()
                    if left <= 0:
                        return best, False
                    await conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                       (f"{max(1, int(left * 1000))}ms",))
                    if first:
                        await cur.execute(MATCH_SQL, {"chats": list(chats), "query": query})
                        first = False
                    rows = await cur.fetchmany(BATCH)
                    if not rows:
                        return best, True
                    for row in rows:
                        item = (row["created_at"], row["id"])
                        if len(best) < limit:
                            heapq.heappush(best, item)
                        elif item > best[0]:
                            heapq.heapreplace(best, item)
    except psycopg.errors.QueryCanceled:
        return best, False


def within(results: list[bytes], max_bytes: int) -> list[bytes]:
    """The first ``results`` whose page (with its commas and envelope) stays within ``max_bytes``; at least one."""
    size = PAGE_ENVELOPE
    for count, item in enumerate(results):
        size += len(item) + (1 if count else 0)
        if size > max_bytes and count:
            return results[:count]
    return results


async def search(db: Database, chats: Sequence[UUID], query: str, limit: int, timeout: float,
                 max_bytes: int) -> tuple[list[bytes], bool]:
    """Matches of ``query`` in ``chats``, newest first (JSON objects), and whether the scan completed.

    At most ``limit`` matches, and no more of them than fit in ``max_bytes`` of a results page.
    """
    if not chats:
        return [], True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with db.connection(timeout=timeout + 2 * db.timeout) as conn:
        best, complete = await _scan(conn, chats, query, limit, deadline)
        if not best:
            return [], complete
        cur = await conn.execute(ROWS_SQL, {"ids": [item[1] for item in best], "max_bytes": max_bytes,
                                            "overhead": RESULT_OVERHEAD})
        rows = await cur.fetchall()
    return within([result_json(row) for row in rows], max_bytes), complete
