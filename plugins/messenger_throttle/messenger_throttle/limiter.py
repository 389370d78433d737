"""The limits: requests per client per sliding second, and sensitive attempts (login, register) per minute.

One :class:`Throttle` per process lives in ``runtime.state`` (see :mod:`.state`).  The request
limiter fails open when its backend cannot answer; the attempt limiter falls back to this
process's memory counters instead, so login protection never disappears with Redis.

Login counts failures only.  An attempt is counted *before* the password is checked (so a burst
of concurrent guesses cannot pass the limit while they are all being hashed) and taken back when
it succeeds: at most ``LOGIN_ATTEMPTS_PER_MINUTE`` failures for one user name from one client, and
``LOGIN_FAILURES_PER_IP`` from one client over all names.  Registrations count every attempt.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from messenger_core import ApiError, request_limit_exceeded

from .backends import Backend, MemoryBackend, RedisBackend

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime
    from messenger_core import BaseHandler

    from .settings import ThrottleSettings

WINDOW = 1.0  # seconds: THROTTLE_RPS counts requests in any sliding window this long
ATTEMPT_PERIOD = 60  # seconds: LOGIN_ATTEMPTS_PER_MINUTE counts attempts in the current calendar minute
KEY_PREFIX = "throttle:"


class Throttle:
    """A process's limiters: the configured backend plus a memory fallback for attempts."""

    def __init__(self, runtime: "Runtime") -> None:
        config = runtime.config
        self.settings: "ThrottleSettings" = config.throttle
        kind = self.settings.backend or config.cache_type
        self.backend: Backend
        if kind == "redis":
            self.backend = RedisBackend(runtime.redis, config.cache_prefix + KEY_PREFIX)
        else:
            self.backend = MemoryBackend()
        self.fallback = self.backend if isinstance(self.backend, MemoryBackend) else MemoryBackend()
        # the backend that counted a request's attempt, to take it back from the same place
        self._counted: weakref.WeakKeyDictionary["BaseHandler", Backend] = weakref.WeakKeyDictionary()

    def attempt_limits(self, scope: str, key: str, client: str) -> list[tuple[str, int]]:
        """The counters one ``scope`` attempt goes to, with their per-minute limits (none: not limited)."""
        settings = self.settings
        if scope == "login":
            return [(f"login:name:{client}:{key}", settings.login_attempts_per_minute),
                    (f"login:ip:{client}", settings.login_failures_per_ip)]
        if scope == "register":
            return [(f"register:ip:{client}", settings.register_per_minute)]
        return []

    async def check_request(self, handler: "BaseHandler") -> None:
        """Count this request for its client; 429 over ``THROTTLE_RPS``; rate-limit headers always."""
        try:
            identity = await handler.authenticate()
        except ApiError:  # bad credentials: the auth hook answers 401 later; count it by IP
            identity = None
        key = f"acct:{identity.account_id}" if identity is not None else f"ip:{handler.client_ip}"
        limit = self.settings.rps
        decision = await self.backend.hit(key, limit, WINDOW)
        handler.set_sticky_header("X-RateLimit-Limit", str(limit))
        # Backend unreachable: the request passes uncounted, so the client has its full budget.
        handler.set_sticky_header("X-RateLimit-Remaining", str(limit if decision is None else decision.remaining))
        if decision is not None and not decision.allowed:
            raise request_limit_exceeded(decision.retry_after_header)

    async def check_attempt(self, handler: "BaseHandler", scope: str, key: str) -> None:
        """Count one ``scope`` attempt of this client; 429 for the rest of the minute past a limit."""
        limits = self.attempt_limits(scope, key, handler.client_ip)
        if not limits:
            return
        backend = self.backend
        decision = await backend.attempt(limits, ATTEMPT_PERIOD)
        if decision is None:
            backend = self.fallback
            decision = await backend.attempt(limits, ATTEMPT_PERIOD)
        if not decision.allowed:
            raise request_limit_exceeded(decision.retry_after_header)
        self._counted[handler] = backend

    async def attempt_succeeded(self, handler: "BaseHandler", scope: str, key: str) -> None:
        """A login that succeeded does not count: take back what :meth:`check_attempt` counted."""
        backend = self._counted.pop(handler, None)
        if backend is None or scope != "login":
            return
        await backend.release([name for name, _ in self.attempt_limits(scope, key, handler.client_ip)],
                              ATTEMPT_PERIOD)
