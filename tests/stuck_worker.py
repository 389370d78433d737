"""``python stuck_worker.py``: ``messenger-api`` serving one plugin whose background task ignores its cancel.

tests/test_core_shutdown.py sends it SIGTERM: the process must still exit, and say what it left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from messenger_core import Runtime, hookimpl
from messenger_core.logs import setup_logging
from messenger_core.plugins import PluginManager
from messenger_core.server import serve
from messenger_core.settings import load_core

log = logging.getLogger("stuck")


async def deaf() -> None:
    """A loop that takes every cancel for a passing error and goes on (the bug it stands for)."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.warning("deaf task: cancel ignored")


@hookimpl
def messenger_startup(runtime: Runtime) -> None:  # pylint: disable=unused-argument
    """Start the deaf task."""
    asyncio.get_running_loop().create_task(deaf(), name="deaf")


def main() -> int:
    """Serve with this module as the only plugin."""
    core = load_core(os.environ)
    setup_logging(core.log_level, core.log_format)
    manager = PluginManager(core, {"stuck": sys.modules[__name__]})
    return serve(manager.load_config(core, os.environ), manager)


if __name__ == "__main__":
    sys.exit(main())
