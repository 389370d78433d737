"""Chat events over PostgreSQL NOTIFY: what a stream or a long-poll in any process must learn of.

Every write that a stream must learn of sends one ``pg_notify`` on :data:`CHANNEL` *inside* its
transaction, so it is delivered on commit, in commit order, and never for a write rolled back.  The
payload is compact JSON with ids only (NOTIFY payloads are limited to 8000 bytes):

* ``{"k": "post", "c": "<chat hex>", "s": <the chat's last seq after this commit>}``: once per chat per
  group-committed batch of posts (sent by the insert statement itself, ``store.POST_MESSAGES``);
* ``{"k": "edit" | "delete", "c": "<chat hex>", "m": "<message hex>", "s": <its seq>, "v": <its change marker>}``
  (the chat's version at this change, now the message's ``changed``: a listener that knows the chat's changes
  up to ``v`` reads the ones it missed after it, :func:`messenger_chats.api.changes_after`);
* ``{"k": "join", "c": "<chat hex>", "u": "<member hex>", "a": "<account hex>" | null, "s": <the chat's last seq
  at the join's commit>, "v": <the chat's version then>}`` (a stream carries the chat from that position, its
  changes known up to that version);
* ``{"k": "leave", "c": "<chat hex>", "u": "<member hex>", "a": "<account hex>" | null}``.

``"v"`` is absent from the events of a process older than migration 0003.

Listeners subscribe through the core's :class:`~messenger_core.PubSub` (``runtime.pubsub``).
"""

from __future__ import annotations

import json
from typing import Any

CHANNEL = "messenger_chats"
NOTIFY = "SELECT pg_notify('messenger_chats', %s)"


async def notify(conn: Any, payload: dict[str, Any]) -> None:
    """Send one event on ``conn`` (inside the caller's transaction: delivered when it commits)."""
    await conn.execute(NOTIFY, (json.dumps(payload, separators=(",", ":")),))


def parse(payload: str) -> dict[str, Any] | None:
    """The event of a notification's payload, or None when it is not one (never raises)."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("k"), str) or not isinstance(event.get("c"), str):
        return None
    return event
