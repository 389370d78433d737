"""Settings of the events plugin (``config.events``)."""

from __future__ import annotations

from messenger_core import Section, Setting, integer, number


class EventsSettings(Section):
    """Bounds of the WebSocket stream ``GET /v1/events``."""

    name = "events"
    auth_timeout = Setting("EVENTS_AUTH_TIMEOUT", number(0.1), 10.0,
                           "Seconds a stream may take to send its auth frame (auth on, no header) before 4401")
    max_backlog_bytes = Setting("EVENTS_MAX_BACKLOG_BYTES", integer(1024), 1024 * 1024,
                                "Bytes of frames waiting for a slow client before it is cut with 4408")
    max_frame_bytes = Setting("EVENTS_MAX_FRAME_BYTES", integer(64), 64 * 1024,
                              "Largest client frame; a larger one closes the stream with 1009")
    frames_per_second = Setting("EVENTS_FRAMES_PER_SECOND", integer(1), 20,
                                "Client frames per second (bursts of twice that); more close the stream with 4429")
    page = Setting("EVENTS_PAGE", integer(1, 1000), 100,
                   "Messages read at a time for a stream's backlog or live delivery")
    ping_interval = Setting("EVENTS_PING_INTERVAL", number(0), 30.0,
                            "Seconds between WebSocket pings to an idle stream (0: none); keeps proxies from "
                            "cutting it and finds dead peers")
