"""Hook implementations of ``messenger_web`` (see messenger_core.hookspecs)."""

from __future__ import annotations

from typing import Any

from messenger_core import hookimpl

from .handlers import default_handlers
from .settings import WebSettings


@hookimpl
def messenger_settings() -> type[WebSettings]:
    """The ``web`` settings section."""
    return WebSettings


@hookimpl
def messenger_routes() -> list[tuple[Any, ...]]:
    """``GET /`` (the client's page) and its assets under ``/web/<build>/``."""
    return default_handlers()
