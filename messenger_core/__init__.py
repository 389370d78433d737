"""Messenger API core: a small Tornado platform whose features arrive as pluggy plugins.

This module is the **public surface**: a plugin imports every name it needs from
``messenger_core`` itself (``from messenger_core import hookimpl, BaseHandler, ApiError``).  Every
other module of the package is internal and may change between releases.

Names are loaded on first use (PEP 562), so a plugin's hooks module that names only ``hookimpl``
and ``Runtime`` does not import Tornado's web stack or apispec.

Reading order for newcomers: ``hookspecs.py`` (what a plugin can contribute), this list, then one
plugin under ``plugins/`` and the plugin author's guide, ``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the internal module that defines it
_EXPORTS: dict[str, str] = {
    # hooks
    "hookimpl": "hookspecs",
    # HTTP
    "BaseHandler": "web",
    "Identity": "web",
    "RequestHook": "web",
    "parse_uuid": "web",
    "dumps": "web",
    # errors
    "ApiError": "errors",
    "DatabaseUnavailable": "errors",
    "ServiceUnavailable": "errors",
    "Unavailable": "errors",
    "not_found": "errors",
    "payload_too_large": "errors",
    "request_limit_exceeded": "errors",
    "bad_parameters": "errors",
    "database_unavailable": "errors",
    "service_unavailable": "errors",
    # settings
    "Config": "settings",
    "Section": "settings",
    "Setting": "settings",
    "boolean": "settings",
    "choice": "settings",
    "integer": "settings",
    "number": "settings",
    "string": "settings",
    # data, cache, queue
    "Database": "db",
    "Lane": "db",
    "Migrations": "db",
    "Cache": "cache",
    "MemoryCache": "cache",
    "NearCache": "near",
    "Signer": "signing",
    "Batcher": "batch",
    "Task": "broker",
    "Availability": "health",
    "Backoff": "aio",
    "storable_text": "validate",
    # metrics: the module itself (``from messenger_core import metrics``; metrics.counter(...))
    "metrics": "metrics",
    # cross-process wake-ups
    "PubSub": "pubsub",
    "SESSIONS_CHANNEL": "pubsub",
    "SharedReads": "pubsub",
    "Waiters": "pubsub",
    # the per-process runtime
    "Runtime": "runtime",
}

__all__ = ["ApiError", "Availability", "Backoff", "BaseHandler", "Batcher", "Cache", "Config", "Database",
           "DatabaseUnavailable", "Identity", "Lane", "MemoryCache", "Migrations", "NearCache", "PubSub",
           "RequestHook", "Runtime", "SESSIONS_CHANNEL", "Section", "ServiceUnavailable", "Setting",
           "SharedReads", "Signer", "Task", "Unavailable", "Waiters", "bad_parameters", "boolean", "choice",
           "database_unavailable", "dumps", "hookimpl", "integer", "metrics", "not_found", "number",
           "parse_uuid", "payload_too_large", "request_limit_exceeded", "service_unavailable",
           "storable_text", "string"]

if TYPE_CHECKING:  # pragma: no cover
    from . import metrics
    from .aio import Backoff
    from .batch import Batcher
    from .broker import Task
    from .cache import Cache, MemoryCache
    from .db import Database, Lane, Migrations
    from .errors import (ApiError, DatabaseUnavailable, ServiceUnavailable, Unavailable, bad_parameters,
                         database_unavailable, not_found, payload_too_large, request_limit_exceeded,
                         service_unavailable)
    from .health import Availability
    from .hookspecs import hookimpl
    from .near import NearCache
    from .pubsub import SESSIONS_CHANNEL, PubSub, SharedReads, Waiters
    from .runtime import Runtime
    from .settings import Config, Section, Setting, boolean, choice, integer, number, string
    from .signing import Signer
    from .validate import storable_text
    from .web import BaseHandler, Identity, RequestHook, dumps, parse_uuid


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'messenger_core' has no attribute {name!r}")
    loaded = importlib.import_module(f".{module}", __name__)
    value = loaded if module == name else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
