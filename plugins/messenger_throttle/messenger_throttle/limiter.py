"""The two limits: requests per client per sliding second, and sensitive attempts (login) per minute.

One :class:`Throttle` per process lives in ``runtime.state["messenger_throttle"]``.  The request
limiter fails open when its backend cannot answer; the attempt limiter falls back to this
process's memory counters instead, so login protection never disappears with Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from messenger_core import ApiError

from .backends import Backend, Decision, MemoryBackend, RedisBackend

if TYPE_CHECKING:  # pragma: no cover
    from messenger_core import Runtime
    from messenger_core import BaseHandler

    from .settings import ThrottleSettings

STATE_KEY = "messenger_throttle"
WINDOW = 1.0  # seconds: THROTTLE_RPS counts requests in any sliding window this long
ATTEMPT_PERIOD = 60  # seconds: LOGIN_ATTEMPTS_PER_MINUTE counts attempts in the current calendar minute
KEY_PREFIX = "throttle:"


def request_limit_exceeded(decision: Decision) -> ApiError:
    """429 ``request-limit-exceeded`` with ``Retry-After`` in whole seconds (at least 1)."""
    return ApiError(429, "request-limit-exceeded", {"Retry-After": decision.retry_after_header})


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
        self.attempt_limits = {"login": self.settings.login_attempts_per_minute}

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
            raise request_limit_exceeded(decision)

    async def check_attempt(self, handler: "BaseHandler", scope: str, key: str) -> None:
        """Count one ``scope`` attempt for ``key`` and for the client IP; 429 for the rest of the minute."""
        limit = self.attempt_limits.get(scope)
        if limit is None:
            return
        keys = [f"{scope}:key:{key}", f"{scope}:ip:{handler.client_ip}"]
        decision = await self.backend.attempt(keys, limit, ATTEMPT_PERIOD)
        if decision is None:
            decision = await self.fallback.attempt(keys, limit, ATTEMPT_PERIOD)
        if not decision.allowed:
            raise request_limit_exceeded(decision)


def throttle_of(runtime: "Runtime") -> Throttle:
    """The process's :class:`Throttle` (created on first use)."""
    throttle = runtime.state.get(STATE_KEY)
    if throttle is None:
        throttle = runtime.state[STATE_KEY] = Throttle(runtime)
    return throttle


async def throttle_request(handler: "BaseHandler") -> None:
    """The ``throttle`` request hook (order 100, before auth)."""
    await throttle_of(handler.runtime).check_request(handler)
