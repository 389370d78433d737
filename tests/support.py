"""Test support of this repository: the testing kit (``messenger_core.testing``) plus its own defaults.

The general machinery (databases, the in-process app, the HTTP client, processes, the TCP proxy)
is the kit's, the same one plugin authors use; what is here is specific to this repository: the
four plugins served by default and the search plugin's queue names per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from messenger_core import testing
from messenger_core.testing import (BIN, RUN_ID, AppServer, Client, Process, Response, TcpProxy, admin_conninfo,
                                    assert_error, conninfo, create_database, delete_rabbit_queue, drop_database,
                                    free_port, kit_settings, load_plugins, poll, sql, start_api, start_consumer,
                                    wait_serving)

__all__ = ["ALL_PLUGINS", "BIN", "PG_HOST", "PG_USER", "REDIS_URL", "RMQ_URL", "RUN_ID", "AppServer", "Client",
           "Process", "Response", "TcpProxy", "admin_conninfo", "assert_error", "base_env", "conninfo",
           "create_database", "delete_rabbit_queue", "drop_database", "free_port", "kit_settings", "load_plugins",
           "poll", "serve_app", "sql", "start_api", "start_consumer", "wait_serving"]

PG_HOST = kit_settings().postgres_host
PG_USER = kit_settings().postgres_user
REDIS_URL = kit_settings().redis_url
RMQ_URL = kit_settings().rmq_url
ALL_PLUGINS = ("messenger_auth", "messenger_chats", "messenger_events", "messenger_search", "messenger_throttle")
#: Every plugin of the repository: the API's five and the web client (swagger.yml and the settings table).
REPO_PLUGINS = (*ALL_PLUGINS, "messenger_web")


def base_env(database: str, **overrides: Any) -> dict[str, str]:
    """The kit's settings for a test server plus this test's own search exchange, queue and key."""
    search = {
        "SEARCH_EXCHANGE": f"mt_{RUN_ID}_{database[-6:]}_exchange",
        "SEARCH_QUEUE": f"mt_{RUN_ID}_{database[-6:]}_queue",
        "SEARCH_ROUTING_KEY": f"mt_{RUN_ID}_{database[-6:]}",
    }
    return testing.base_env(database, **{**search, **overrides})


@asynccontextmanager
async def serve_app(env: Mapping[str, str], plugins: Iterable[str] = ALL_PLUGINS,
                    extra: Mapping[str, Any] | None = None) -> AsyncIterator[AppServer]:
    """The kit's in-process app, serving this repository's four plugins unless told otherwise."""
    async with testing.serve_app(env, plugins, extra) as server:
        yield server
