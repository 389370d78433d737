"""Test support: real servers (in-process and as subprocesses), an HTTP client, a TCP proxy.

Everything here talks to the real PostgreSQL, Redis and RabbitMQ of the machine on loopback.
Each test run gets its own database name, Redis key prefix and RabbitMQ queue names (``RUN_ID``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psycopg
from psycopg import sql
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from messenger_core.app import MessengerApp, make_app
from messenger_core.plugins import PluginManager
from messenger_core.settings import load_core

RUN_ID = uuid.uuid4().hex[:8]
PG_HOST = "127.0.0.1"
PG_USER = os.environ.get("TEST_POSTGRES_USER", "postgres")
REDIS_URL = "redis://127.0.0.1:6379/0"
RMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
BIN = Path(sys.executable).parent
ALL_PLUGINS = ("messenger_auth", "messenger_chats", "messenger_search", "messenger_throttle")
#: Every plugin of the repository: the API's four and the web client (swagger.yml and the settings table).
REPO_PLUGINS = (*ALL_PLUGINS, "messenger_web")


def admin_conninfo() -> str:
    """The maintenance database of the local server."""
    return f"host={PG_HOST} user={PG_USER} dbname=postgres"


def create_database(prefix: str = "mt") -> str:
    """A new empty database named after this run; returns its name."""
    name = f"{prefix}_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def base_env(database: str, **overrides: Any) -> dict[str, str]:
    """Settings for a test server: this run's database, key prefix and quiet logs."""
    env = {
        "POSTGRES_HOSTS": PG_HOST,
        "POSTGRES_USER": PG_USER,
        "POSTGRES_DB": database,
        "REDIS_URL": REDIS_URL,
        "CACHE_PREFIX": f"mt-{RUN_ID}-{database[-6:]}:",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "0",
        "WORKERS": "1",
        "HOST": "127.0.0.1",
        "SEARCH_EXCHANGE": f"mt_{RUN_ID}_{database[-6:]}_exchange",
        "SEARCH_QUEUE": f"mt_{RUN_ID}_{database[-6:]}_queue",
        "SEARCH_ROUTING_KEY": f"mt_{RUN_ID}_{database[-6:]}",
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return env


@dataclass
class Response:
    """What a request got back."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


class Client:
    """An HTTP client bound to one base URL, optionally with a session header."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.http = AsyncHTTPClient(force_instance=True)

    def with_headers(self, **headers: str) -> "Client":
        """A client for the same server with extra default headers."""
        merged = {**self.headers, **{k.replace("_", "-"): v for k, v in headers.items()}}
        return Client(self.base_url, merged)

    async def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                      headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Response:
        """Send one request; ``body`` is encoded as JSON, ``raw`` is sent as it is."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        request = HTTPRequest(self.base_url + path, method=method, body=data,
                              headers={**self.headers, **(headers or {})},
                              request_timeout=timeout, connect_timeout=timeout,
                              allow_nonstandard_methods=True)
        resp = await self.http.fetch(request, raise_error=False)
        if resp.code == 599:
            raise ConnectionError(f"{method} {path}: {resp.error}")
        return Response(resp.code, resp.body or b"", resp.headers)

    async def get(self, path: str, **kwargs: Any) -> Response:
        """GET."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        """POST with a JSON body."""
        return await self.request("POST", path, body=body, **kwargs)


def load_plugins(names: tuple[str, ...]) -> dict[str, Any]:
    """Plugin objects by entry-point name, registered explicitly (autoload stays off in tests)."""
    return {name: importlib.import_module(f"{name}.hooks") for name in names}


@dataclass
class AppServer:
    """An in-process server: the app, its URL and a client."""

    app: MessengerApp
    url: str
    client: Client
    http_server: HTTPServer = field(repr=False)

    @property
    def runtime(self) -> Any:
        """The app's runtime (db, cache, queue, state)."""
        return self.app.runtime


@asynccontextmanager
async def serve_app(env: Mapping[str, str], plugins: tuple[str, ...] = ALL_PLUGINS,
                    extra: Mapping[str, Any] | None = None) -> AsyncIterator[AppServer]:
    """Run the real app on an unused loopback port in this event loop, migrations applied."""
    environ = {**env, "MESSENGER_DISABLE_PLUGIN_AUTOLOAD": "1"}
    core = load_core(environ)
    manager = PluginManager(core, {**load_plugins(plugins), **(extra or {})})
    config = manager.load_config(core, environ)
    app = make_app(config, manager)
    sock, port = bind_unused_port()
    http_server = HTTPServer(app)
    http_server.add_sockets([sock])
    await app.runtime.start()
    await asyncio.wait_for(app.runtime.migrated.wait(), 30)
    url = f"http://127.0.0.1:{port}"
    try:
        yield AppServer(app, url, Client(url), http_server)
    finally:
        http_server.stop()
        await app.runtime.stop()


async def poll(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A ``messenger-api`` or ``messenger-consumer`` subprocess with its log in a file.

    ``inherit_env=False`` gives it exactly ``env`` and nothing of the test runner's environment.
    """

    def __init__(self, command: list[str], env: Mapping[str, str], log_path: Path, inherit_env: bool = True,
                 cwd: Path | None = None) -> None:
        self.log_path = log_path
        self.started = time.monotonic()
        self.log_file = open(log_path, "ab")  # pylint: disable=consider-using-with
        full_env = {**os.environ, **env} if inherit_env else dict(env)
        full_env.pop("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", None)
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            command, env=full_env, cwd=cwd, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait; SIGKILL the group if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log_file.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log_file.close()


async def start_api(env: Mapping[str, str], log_path: Path, ready: str = "/ping_db",
                    timeout: float = 30.0) -> tuple[Process, Client]:
    """Start ``messenger-api`` on a free port; return once ``ready`` answers 200."""
    port = int(env.get("PORT") or free_port())
    proc = Process([str(BIN / "messenger-api")], {**env, "PORT": str(port)}, log_path)
    client = Client(f"http://127.0.0.1:{port}")

    async def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"messenger-api exited early:\n{proc.log}")
        try:
            return (await client.get(ready, timeout=2)).status == 200
        except ConnectionError:
            return False
    await poll(up, timeout)
    return proc, client


def start_consumer(env: Mapping[str, str], log_path: Path) -> Process:
    """Start ``messenger-consumer`` (it logs 'consumer ready' once it consumes)."""
    return Process([str(BIN / "messenger-consumer")], env, log_path)


def delete_rabbit_queue(queue: str, exchange: str) -> None:
    """Remove a test's RabbitMQ queue and exchange (they are durable: they outlive the test)."""
    conn = pika.BlockingConnection(pika.URLParameters(RMQ_URL))
    try:
        channel = conn.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        conn.close()


class TcpProxy:
    """A loopback TCP proxy in its own thread; ``cut()`` drops every connection and refuses new ones.

    Put it between the app and PostgreSQL / Redis / RabbitMQ to simulate an outage without
    touching the shared servers.  ``stall()`` is a silent partition instead: connections stay open
    but nothing passes until ``restore()``.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._started.set()
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.open:
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def _call(self, func: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            func()
            done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    def cut(self) -> None:
        """Drop every open connection; new ones are accepted and closed at once."""
        def drop() -> None:
            self.open = False
            for writer in list(self._writers):
                transport = writer.transport
                if transport is not None:
                    transport.abort()
            self._writers.clear()
        self._call(drop)

    def stall(self) -> None:
        """Hold every byte in both directions, keeping connections open (a silent partition)."""
        self._call(self._flowing.clear)

    def restore(self) -> None:
        """Forward again (held bytes go through)."""
        def reopen() -> None:
            self.open = True
            self._flowing.set()
        self._call(reopen)

    def close(self) -> None:
        """Stop the proxy thread, its server and every connection task."""
        self.cut()

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
