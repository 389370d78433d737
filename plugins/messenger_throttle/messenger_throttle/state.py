"""The plugin's per-process state: one :class:`~.limiter.Throttle` in ``runtime.state``."""

from __future__ import annotations

from messenger_core import Runtime

from .limiter import Throttle

KEY = "messenger_throttle"


def start(runtime: Runtime) -> Throttle:
    """Create this process's limiters (after the fork, so Redis connections are per process)."""
    throttle = runtime.state[KEY] = Throttle(runtime)
    return throttle


def throttle_of(runtime: Runtime) -> Throttle:
    """This process's limiters (after ``messenger_startup``)."""
    return runtime.state[KEY]
