"""What our request path costs over a bare Tornado handler, in process CPU, without sockets.

``python -m bench.request_cost`` serves ``GET /ping`` through ``messenger-api``'s application (every
plugin of the bench stack, auth on, metrics in multiprocess files as in production) and ``GET /``
through a bare Tornado hello-world, both in this process: each request is built as Tornado's HTTP
server builds it and handed to the application, whose answer goes to a connection that only records
that it finished.  It prints the process CPU per request of each (the best of five runs).

wrk against real servers (``bench.run``'s W1 and floor) measures the whole machine, sockets and
parsing included, and moves with whatever else runs; this measures only the part the two differ in,
the application's own work per request.  It still moves by several microseconds from run to run
(the two are measured one after the other, and the processor's caches and frequency change under
them): compare the best of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from tornado import httputil
from tornado.web import Application, RequestHandler

#: the plugins of the bench stack (bench/stack.py), the stream plugin included
APPS = "messenger_auth,messenger_chats,messenger_search,messenger_throttle,messenger_events"


class _Connection(httputil.HTTPConnection):
    """The end of the server a request's answer goes to: it keeps nothing and says when it finished."""

    def __init__(self) -> None:
        self.finished: asyncio.Future[None] | None = None

    def set_close_callback(self, callback: Any) -> None:
        """Nothing ever closes."""

    def write_headers(self, start_line: Any, headers: Any, chunk: bytes | None = None) -> "asyncio.Future[None]":
        return _done()

    def write(self, chunk: bytes) -> "asyncio.Future[None]":
        return _done()

    def finish(self) -> None:
        assert self.finished is not None
        self.finished.set_result(None)


def _done() -> "asyncio.Future[None]":
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class _Hello(RequestHandler):
    def get(self) -> None:
        """The floor's whole application (bench/hello.py)."""
        self.write("Hello, world")


def hello_app() -> Application:
    """The floor: bench/hello.py's application."""
    return Application([(r"/", _Hello)])


def our_app() -> Application:
    """``messenger-api``'s application of one worker, with the bench stack's settings (not started:
    ``/ping`` touches no dependency)."""
    # pylint: disable=import-outside-toplevel
    from messenger_core import metrics
    from messenger_core.app import make_app
    from messenger_core.plugins import PluginManager
    from messenger_core.settings import load_core
    metrics.use_directory(tempfile.mkdtemp(prefix="request-cost-"))
    env = {"MESSENGER_APPS": APPS, "AUTH_DISABLED": "0", "NGINX_THROTTLING": "1", "ACCESS_LOG": "0"}
    core = load_core(env)
    plugins = PluginManager(core)
    return make_app(plugins.load_config(core, env), plugins, 2)


async def per_request(app: Application, path: str, requests: int, runs: int = 5) -> float:
    """Microseconds of process CPU per request (the best of ``runs``, after a warm-up)."""
    connection = _Connection()
    headers = httputil.HTTPHeaders({"Host": "127.0.0.1:8080", "User-Agent": "wrk"})
    start_line = httputil.RequestStartLine("GET", path, "HTTP/1.1")

    async def serve(count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            connection.finished = loop.create_future()
            app(httputil.HTTPServerRequest(start_line=start_line, headers=headers, connection=connection))
            await connection.finished

    await serve(500)
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        await serve(requests)
        best = min(best, time.process_time() - started)
    return 1e6 * best / requests


def main() -> None:
    """Measure both, print a Markdown line each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per run")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    floor = asyncio.run(per_request(hello_app(), "/", args.requests))
    ours = asyncio.run(per_request(our_app(), "/ping", args.requests))
    print("| application | CPU us per request |\n|---|---:|")
    print(f"| bare Tornado hello-world (the floor) | {floor:.1f} |")
    print(f"| messenger-api, GET /ping | {ours:.1f} |")
    print(f"\nour request path costs {ours - floor:.1f} us over the floor ({ours / floor:.2f}x)")


if __name__ == "__main__":
    main()
