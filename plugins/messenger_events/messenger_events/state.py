"""The plugin's per-process state: one :class:`~.hub.Hub` in ``runtime.state``."""

from __future__ import annotations

from messenger_core import Runtime

from .hub import Hub

KEY = "messenger_events"


def hub_of(runtime: Runtime) -> Hub:
    """The process's :class:`Hub` (made on the first stream, which opens the ``LISTEN`` connection)."""
    hub: Hub | None = runtime.state.get(KEY)
    if hub is None:
        hub = runtime.state[KEY] = Hub(runtime, runtime.config.events.page)
    return hub
