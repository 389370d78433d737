"""Chat events over PostgreSQL NOTIFY: one notification per write that a stream must learn of.

Every payload goes out on the channel ``messenger_chats`` *inside* the writing transaction, so it
is delivered on commit, in commit order, and never for a write that rolled back.  Payloads carry
ids only (never message text; NOTIFY payloads are limited to 8000 bytes)::

    {"k": "post",   "c": "<chat hex>", "s": <the chat's last seq after this commit>}
    {"k": "edit",   "c": "<chat hex>", "m": "<message hex>", "s": <its seq>}
    {"k": "delete", "c": "<chat hex>", "m": "<message hex>", "s": <its seq>}
    {"k": "join",   "c": "<chat hex>", "u": "<member hex>", "a": "<account hex>" | null}
    {"k": "leave",  "c": "<chat hex>", "u": "<member hex>", "a": "<account hex>" | null}
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

CHANNEL = "messenger_chats"
NOTIFY = "SELECT pg_notify('messenger_chats', %s)"


async def notify(conn: psycopg.AsyncConnection, payload: dict[str, Any]) -> None:
    """Send ``payload`` (JSON) on ``messenger_chats`` in ``conn``'s current transaction."""
    await conn.execute(NOTIFY, (json.dumps(payload, separators=(",", ":")),))
