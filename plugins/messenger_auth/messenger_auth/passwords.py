"""Password hashing: salted scrypt, parameters stored beside the hash, run off the event loop.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt b64>$<key b64>``; verification uses the parameters
written in it, so raising the cost later (``AUTH_SCRYPT_*``) leaves old hashes valid, and a hash
weaker than the configured cost is replaced at the account's next successful login.  The default
cost, N=2**14, r=8, p=5, is one of the equivalent minimum scrypt configurations OWASP lists (beside
N=2**17, r=8, p=1); of those it needs the least memory, 16 MiB a hash.  Neither the
password nor the hash is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

SCHEME = "scrypt"
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's cost parameters: CPU/memory cost ``n`` (a power of 2), block size ``r``, parallelism ``p``."""

    n: int
    r: int
    p: int

    def weaker_than(self, other: "ScryptCost") -> bool:
        """Whether a hash made with these parameters costs less work (n*r*p) or memory (n*r) than ``other``."""
        return self.n * self.r * self.p < other.n * other.r * other.p or self.n * self.r < other.n * other.r

    @property
    def maxmem(self) -> int:
        """Memory bound handed to OpenSSL: what these parameters need, with headroom."""
        return 128 * self.r * (self.n + self.p + 2) + (1 << 16)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, cost: ScryptCost, length: int = KEY_BYTES) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=cost.n, r=cost.r, p=cost.p,
                          maxmem=cost.maxmem, dklen=length)


def hash_password(password: str, cost: ScryptCost) -> str:
    """A new salted hash of ``password`` (blocking: call it through :meth:`Hasher.hash`)."""
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, cost)
    return f"{SCHEME}${cost.n}${cost.r}${cost.p}${_b64(salt)}${_b64(key)}"


def parse_hash(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    """Cost, salt and key of a stored hash, or None when it is not one of ours."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != SCHEME:
            return None
        return (ScryptCost(int(n), int(r), int(p)), base64.b64decode(salt, validate=True),
                base64.b64decode(key, validate=True))
    except ValueError:
        return None


def needs_upgrade(stored: str, wanted: ScryptCost) -> bool:
    """Whether ``stored`` was made with weaker parameters than ``wanted`` (it is rehashed at login)."""
    parsed = parse_hash(stored)
    return parsed is not None and parsed[0].weaker_than(wanted)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time compare; False for a malformed hash)."""
    parsed = parse_hash(stored)
    if parsed is None:
        return False
    cost, salt, key = parsed
    return hmac.compare_digest(_derive(password, salt, cost, len(key)), key)


class HashingBusy(Exception):
    """Every place of the hashing queue is taken (the caller answers 503 service-unavailable)."""


class Hasher:
    """The process's hashing threads behind a bounded queue.

    At most ``queue`` hashes are waiting or running at once; one more is refused at once with
    :class:`HashingBusy` instead of waiting behind a flood (a flood of registrations would otherwise
    delay every login by as long as the queue is deep).
    """

    def __init__(self, threads: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="auth-hash")
        self.queue = queue
        self.pending = 0

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self.pending >= self.queue:
            raise HashingBusy()
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)
        finally:
            self.pending -= 1

    async def hash(self, password: str, cost: ScryptCost) -> str:
        """:func:`hash_password` off the event loop."""
        return await self._run(hash_password, password, cost)

    async def verify(self, password: str, stored: str) -> bool:
        """:func:`verify_password` off the event loop."""
        return await self._run(verify_password, password, stored)

    def shutdown(self) -> None:
        """Stop the threads (queued hashes are cancelled)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
