"""The plugin's per-process state (``runtime.state["messenger_search"]``) and its accessor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from messenger_core import Runtime

from .settings import SearchSettings
from .store import SearchStore

KEY = "messenger_search"


@dataclass
class SearchState:
    """The task store, the settings, and whether tasks wait out outages (the consumer does)."""

    store: SearchStore
    settings: SearchSettings
    patient: bool  # consumer: wait for Redis / PostgreSQL to come back instead of failing the task
    background: asyncio.Task[None] | None = None


def state_of(runtime: Runtime) -> SearchState:
    """The plugin's state in this process (after ``messenger_startup``)."""
    return runtime.state[KEY]
