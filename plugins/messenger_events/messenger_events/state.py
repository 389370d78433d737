"""The plugin's per-process state: one :class:`~.hub.Hub` in ``runtime.state``, and the streams open."""

from __future__ import annotations

from messenger_core import Runtime, metrics

from .hub import Hub

KEY = "messenger_events"
STREAMS_KEY = "messenger_events.streams"
OPEN = metrics.gauge("messenger_streams_open", "WebSocket streams (GET /v1/events) open right now")


def open_streams(runtime: Runtime) -> int:
    """Streams this process has open right now (upgraded, not closed yet)."""
    return runtime.state.get(STREAMS_KEY, 0)


def stream_opened(runtime: Runtime) -> None:
    """Count one more open stream (and the ``messenger_streams_open`` gauge with it)."""
    runtime.state[STREAMS_KEY] = open_streams(runtime) + 1
    OPEN.inc()


def stream_closed(runtime: Runtime) -> None:
    """Count one stream fewer."""
    runtime.state[STREAMS_KEY] = open_streams(runtime) - 1
    OPEN.dec()


def hub_of(runtime: Runtime) -> Hub:
    """The process's :class:`Hub` (made on the first stream, which opens the ``LISTEN`` connection)."""
    hub: Hub | None = runtime.state.get(KEY)
    if hub is None:
        hub = runtime.state[KEY] = Hub(runtime, runtime.config.events.page)
    return hub
