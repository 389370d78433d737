"""Settings of ``messenger_web``: ``config.web.<attr>``, read from the environment once."""

from __future__ import annotations

from messenger_core import Section, Setting, integer


class WebSettings(Section):
    """How the browser client's assets are cached and how long its long-polls wait."""

    name = "web"
    asset_max_age = Setting("WEB_ASSET_MAX_AGE", integer(0, 31_536_000), 31_536_000,
                            "Cache lifetime (s) of the web client's assets; their URL names their content")
    long_poll_wait = Setting("WEB_LONG_POLL_WAIT", integer(1, 60), 25,
                             "Seconds the web client holds a long-poll when its WebSocket cannot connect")
