"""Iterators: opaque, tamper-evident positions in one chat.

An iterator names a chat and a position ``seq`` in it ("after message number seq"; 0 is the start).
It is the URL-safe base64 (no padding) of ``chat uuid (16 bytes) | seq (8 bytes, big-endian) |
check (4 bytes)``, where the check is a keyed BLAKE2b of the rest: a hand-edited or truncated
iterator is refused, as is one of another chat.  The encoding is canonical, so
``encode(decode(x)) == x`` for every accepted ``x``.  The check is a typo guard, not a secret:
a forged iterator can only name a position in a chat the caller may already read, and positions
beyond the chat's last message are refused by the handler.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import uuid

from .errors import bad_cursor

_PAYLOAD = struct.Struct(">16sQ")
_CHECK_SIZE = 4
_TEXT = re.compile(r"^[A-Za-z0-9_-]{38}$")  # 28 bytes in base64 without padding
_KEY = b"messenger_chats/iterator/v1"


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_SIZE, key=_KEY).digest()


def encode(chat_id: uuid.UUID, seq: int) -> str:
    """The iterator meaning "after message ``seq`` of ``chat_id``"."""
    payload = _PAYLOAD.pack(chat_id.bytes, seq)
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode("ascii")


def decode(text: str, chat_id: uuid.UUID) -> int:
    """The position an iterator of ``chat_id`` names; 400 ``bad-cursor`` for anything else."""
    if not _TEXT.match(text):
        raise bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        raise bad_cursor() from None
    payload, check = raw[:_PAYLOAD.size], raw[_PAYLOAD.size:]
    if len(check) != _CHECK_SIZE or check != _check(payload):
        raise bad_cursor()
    chat_bytes, seq = _PAYLOAD.unpack(payload)
    if chat_bytes != chat_id.bytes or encode(chat_id, seq) != text:
        raise bad_cursor()
    return seq
