"""The floor reference: a plain Tornado hello-world with our worker setup.

``python -m bench.hello PORT WORKERS [LOOP]`` forks WORKERS processes, each with its own SO_REUSEPORT
socket and IOLoop (as ``messenger-api`` does), and serves ``GET /`` with "Hello, world".  LOOP is
the service's ``EVENT_LOOP`` (its default unless told), so the floor runs on the loop the service runs on.
No framework of ours, no logging set up: the cheapest Tornado server with that process layout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from messenger_core.aio import event_loop_factory
from messenger_core.settings import CoreSettings


class HelloHandler(RequestHandler):
    """GET / answers "Hello, world"."""

    def get(self) -> None:
        """The whole application."""
        self.write("Hello, world")


async def serve(port: int) -> None:
    """One worker: its own socket, until SIGTERM."""
    server = HTTPServer(Application([(r"/", HelloHandler)]))
    server.add_sockets(bind_sockets(port, "127.0.0.1", reuse_port=True))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.stop()


def main() -> None:
    """Fork the workers, forward SIGTERM to them, wait for them."""
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    loop_factory = event_loop_factory(sys.argv[3] if len(sys.argv) > 3 else CoreSettings.event_loop.default)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(serve(port))
            os._exit(0)  # pylint: disable=protected-access
        pids.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in pids:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    for child in pids:
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
