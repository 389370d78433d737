"""Signed cache entries: what the service reads back from a shared cache is what it wrote there.

Anyone who can write to Redis could otherwise put a session or a membership fact there and have it
believed without its database row.  A plugin that caches something it will trust seals the value
with ``runtime.signer`` before it stores it and opens it after it reads it:

    cached = runtime.signer.seal(key, value)       # 32 hex characters of tag, then the value
    value = runtime.signer.open(key, cached)       # the value, or None: forged, altered, another key

The tag is an HMAC-SHA256 (its first 128 bits) of the key and the value under ``CACHE_SECRET``, so an
entry cannot be made up, altered, or moved to another key (a real session's entry copied under another
id) without the secret.  An entry that does not open is treated as a miss, so the source of truth
decides, and its next read caches a genuine entry over it.  What a tag cannot stop is a replay: an
entry the service itself once wrote, stored again at its own key (see the README, Auth).

Every process of a deployment (each API container, the consumer) needs the same ``CACHE_SECRET``.
Without one, each start picks a random key: the workers of one ``messenger-api`` share it (it is made
before the fork), other processes cannot use their entries and read the database instead, which is
correct but slower; with ``CACHE_TYPE=redis`` that is logged as a warning at start.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time

from .settings import Config

log = logging.getLogger("messenger.signing")

TAG_CHARS = 32  # hex characters of the tag in front of the value
REFUSED_LOG_EVERY = 60.0  # seconds between two warnings about refused entries
PLACEHOLDER = "change-me"  # how the placeholders of deploy/.env.prod begin

_RANDOM: list[bytes] = []  # this start's random key, once made (inherited by forked workers)


def secret_of(config: Config) -> bytes:
    """``CACHE_SECRET``, or this start's random key (one per process tree: call it before forking)."""
    if config.cache_secret:
        if config.cache_secret.startswith(PLACEHOLDER) and config.cache_type == "redis":
            log.warning("CACHE_SECRET is still the placeholder of deploy/.env.prod: anyone who can write "
                        "to Redis can forge sessions; set a random one (openssl rand -hex 32)")
        return config.cache_secret.encode()
    if not _RANDOM:
        _RANDOM.append(secrets.token_bytes(32))
        if config.cache_type == "redis":
            log.warning("CACHE_SECRET is not set: cached sessions and membership facts are signed with a "
                        "random key of this start, which no other process (the consumer, another instance, "
                        "the next start) can check, so they read PostgreSQL instead; give every process of "
                        "the service the same CACHE_SECRET")
    return _RANDOM[0]


class Signer:
    """Seals values with a tag binding them to their key, and opens sealed values (None when forged)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.refused = 0  # entries that did not open, since the process started
        self._logged_at = -REFUSED_LOG_EVERY
        self._unlogged = 0

    def _tag(self, key: str, value: bytes) -> bytes:
        return hmac.digest(self._secret, key.encode() + b"\n" + value, "sha256")[:TAG_CHARS // 2].hex().encode()

    def seal(self, key: str, value: bytes) -> bytes:
        """``value`` with its tag in front, to be stored under ``key``."""
        return self._tag(key, value) + value

    def open(self, key: str, sealed: bytes) -> bytes | None:
        """The value ``seal(key, value)`` made ``sealed`` from; None when it was not made so."""
        value = sealed[TAG_CHARS:]
        if len(sealed) >= TAG_CHARS and hmac.compare_digest(sealed[:TAG_CHARS], self._tag(key, value)):
            return value
        self._refuse(key)
        return None

    def _refuse(self, key: str) -> None:
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSED_LOG_EVERY:
            log.warning("refused %d cached entr%s whose tag does not match (forged, altered, or written by a "
                        "process with another CACHE_SECRET), the last one %r; the database decides instead",
                        self._unlogged, "y" if self._unlogged == 1 else "ies", key)
            self._logged_at = now
            self._unlogged = 0
