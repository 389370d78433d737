"""The plugin's per-process state (``runtime.state["messenger_auth"]``) and its accessor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from messenger_core import Runtime

from .epoch import SessionsEpoch
from .passwords import Hasher
from .settings import AuthSettings

KEY = "messenger_auth"


@dataclass
class AuthState:
    """The password hasher (``AUTH_HASH_THREADS``, ``AUTH_HASH_QUEUE``), the sessions cleanup task and
    the sessions epoch (API processes with ``CACHE_TYPE=redis``; see :mod:`.epoch`)."""

    hasher: Hasher
    cleanup: asyncio.Task[None] | None = None
    epoch: SessionsEpoch | None = None


def start(runtime: Runtime) -> AuthState:
    """Create this process's state (its threads start on first use)."""
    settings: AuthSettings = runtime.config.auth
    state = runtime.state[KEY] = AuthState(Hasher(settings.hash_threads, settings.hash_queue))
    return state


def state_of(runtime: Runtime) -> AuthState:
    """The plugin's state in this process (after ``messenger_startup``)."""
    return runtime.state[KEY]
