"""The plugin's per-process state: one :class:`ChatStore` and its :class:`Conversations` in ``runtime.state``."""

from __future__ import annotations

from messenger_core import Runtime

from .conversations import Conversations
from .store import ChatStore

KEY = "messenger_chats"
CONVERSATIONS_KEY = "messenger_chats.conversations"


def start(runtime: Runtime) -> ChatStore:
    """Create this process's store over the shared database pool, cache (entries sealed by the runtime's
    signer) and near cache."""
    store = ChatStore(runtime.db, runtime.cache, runtime.config.chats, runtime.signer, runtime.near)
    runtime.state[KEY] = store
    runtime.state[CONVERSATIONS_KEY] = Conversations(store, runtime.config.chats.invite_ttl)
    return store


def store_of(runtime: Runtime) -> ChatStore:
    """This process's store (after ``messenger_startup``)."""
    return runtime.state[KEY]


def conversations_of(runtime: Runtime) -> Conversations:
    """This process's conversation queries (after ``messenger_startup``)."""
    return runtime.state[CONVERSATIONS_KEY]
