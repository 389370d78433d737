"""The plugin's per-process state: one :class:`ChatStore` in ``runtime.state``."""

from __future__ import annotations

from messenger_core import Runtime

from .store import ChatStore

KEY = "messenger_chats"


def start(runtime: Runtime) -> ChatStore:
    """Create this process's store over the shared database pool and cache."""
    store = runtime.state[KEY] = ChatStore(runtime.db, runtime.cache, runtime.config.chats)
    return store


def store_of(runtime: Runtime) -> ChatStore:
    """This process's store (after ``messenger_startup``)."""
    return runtime.state[KEY]
