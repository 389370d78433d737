"""Serving: one process, or a supervisor with WORKERS children each on its own SO_REUSEPORT socket.

Pools and connections are created in each child after the fork.  SIGTERM (or SIGINT) stops
accepting, tells the runtime to drain (held long-polls answer their empty page at once, streams close
with 1001 so that clients reconnect elsewhere), lets requests in flight finish (``SHUTDOWN_TIMEOUT``),
closes pools and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import time
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import metrics
from .aio import event_loop_factory, loop_name
from .app import make_app
from .errors import StartupError
from .plugins import PluginManager
from .settings import Config
from .signing import secret_of
from .web import LINGER_BYTES

log = logging.getLogger("messenger.server")
STARTUP_GRACE = 30.0  # most seconds a worker of several waits for its first migration attempt
LEFTOVER_SECONDS = 2.0  # most seconds the tasks still running after shutdown get to take their cancel


def resolve_workers(workers: int) -> int:
    """WORKERS, where 0 means one per CPU."""
    return workers or os.cpu_count() or 1


async def serve_worker(config: Config, plugins: PluginManager, processes: int) -> None:
    """Run one serving process until SIGTERM/SIGINT, then shut down gracefully."""
    app = make_app(config, plugins, processes)
    # The app refuses a body over MAX_BODY_BYTES itself, with 413 JSON (BodyLimit); Tornado's own
    # bound, which answers a bare 400, stays far above it so that a chunked upload meets the app's.
    server = HTTPServer(app, xheaders=False, idle_connection_timeout=60, body_timeout=30,
                        max_body_size=LINGER_BYTES)
    await app.runtime.start()
    if processes > 1:
        # With SO_REUSEPORT the kernel hands connections to every bound socket: bind only once this
        # worker's first migration attempt is over, so no client meets a worker still migrating while
        # its sibling already answers. If PostgreSQL is away, that attempt fails fast: serve anyway
        # (/ping, and 503 until it is back).
        try:
            await asyncio.wait_for(app.runtime.first_migration_attempt.wait(), timeout=STARTUP_GRACE)
        except asyncio.TimeoutError:
            log.warning("migrations still running after %.0fs; serving anyway", STARTUP_GRACE)
    server.add_sockets(bind_sockets(config.port, config.host or None, reuse_port=processes > 1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if processes > 1:
        watchdog = asyncio.ensure_future(_stop_when_orphaned(os.getppid(), stop))
    log.info("serving http://%s:%d (pid %d, %s loop, plugins: %s)", config.host, config.port, os.getpid(),
             loop_name(loop), ", ".join(plugins.enabled) or "none")
    await stop.wait()
    if processes > 1:
        watchdog.cancel()
    log.info("stopping: no new connections, finishing %d request(s) in flight", app.runtime.inflight)
    server.stop()
    app.runtime.drain()  # held long-polls answer their empty page now, streams close with 1001
    deadline = time.monotonic() + config.shutdown_timeout
    while app.runtime.inflight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=1.0)
    except asyncio.TimeoutError:
        pass
    await app.runtime.stop()
    log.info("stopped")


def run_worker(config: Config, plugins: PluginManager, processes: int) -> None:
    """Run :func:`serve_worker` on a new event loop; cancel what is left, waiting a bounded time.

    ``asyncio.run`` would wait without limit for every leftover task to take its cancel, so one
    that never does (a reconnect loop that mistook its cancel for a network error) would keep a
    stopped process alive until something SIGKILLs it.
    """
    loop = event_loop_factory(config.event_loop)()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve_worker(config, plugins, processes))
        leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            _, pending = loop.run_until_complete(asyncio.wait(leftover, timeout=LEFTOVER_SECONDS))
            for task in pending:
                log.warning("shutdown: %r ignored its cancel; exiting without it", task.get_coro())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL, OOM) shuts down instead of serving on unsupervised."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone; this worker stops", parent)
    stop.set()


class Supervisor:
    """Forks the workers, forwards SIGTERM/SIGINT to them and restarts one that crashes."""

    def __init__(self, config: Config, plugins: PluginManager, workers: int) -> None:
        self.config = config
        self.plugins = plugins
        self.workers = workers
        self.children: dict[int, float] = {}
        self.stopping = False
        self.fast_failures = 0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                run_worker(self.config, self.plugins, self.workers)
            except Exception:  # pylint: disable=broad-exception-caught
                log.exception("worker failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)  # pylint: disable=protected-access
        self.children[pid] = time.monotonic()

    def _forward(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Serve until a signal; 0 on a clean stop."""
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        for _ in range(self.workers):
            self._spawn()
        log.info("supervisor %d runs %d workers", os.getpid(), self.workers)
        status = 0
        while self.children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            started = self.children.pop(pid, None)
            if started is None:
                continue
            metrics.mark_dead(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                status = status or (code if code > 0 else 0)
                continue
            log.error("worker %d exited with %d; starting another", pid, code)
            self.fast_failures = self.fast_failures + 1 if time.monotonic() - started < 5 else 0
            if self.fast_failures > 5:
                log.error("workers keep failing at start; giving up")
                self._forward(signal.SIGTERM, None)
                status = 1
                continue
            time.sleep(min(0.2 * self.fast_failures, 2.0))
            if not self.stopping:  # a SIGTERM during the pause was forwarded to the others only
                self._spawn()
        return status


def serve(config: Config, plugins: PluginManager) -> int:
    """``messenger-api``: serve with WORKERS processes; returns the exit status."""
    workers = resolve_workers(config.workers)
    secret_of(config)  # before any fork: without CACHE_SECRET every worker then has the same random key
    event_loop_factory(config.event_loop)  # before any fork: a missing uvloop fails once, not in each worker
    # before any fork and any metric: every worker writes its values there, any of them sums them
    created = None if config.metrics_dir else tempfile.mkdtemp(prefix="messenger-metrics-")
    try:
        metrics.use_directory(config.metrics_dir or created or "")
    except (OSError, RuntimeError) as exc:
        raise StartupError(f"METRICS_DIR={config.metrics_dir!r}: {exc}") from None
    try:
        if workers == 1:
            run_worker(config, plugins, 1)
            return 0
        for sock in bind_sockets(config.port, config.host or None, reuse_port=True):
            sock.close()  # fail here, once, when the port is taken
        return Supervisor(config, plugins, workers).run()
    finally:
        if created is not None:
            metrics.remove_directory(created)
