"""Testing kit for plugin authors: a pytest plugin that serves the real app against real services.

Installed with the core (``pip install messenger-core[testing]``) and loaded by pytest through the
``pytest11`` entry point ``messenger``.  Its fixtures start the real application, in process, on an
unused loopback port, with the plugins a test chooses (registered explicitly, entry-point
autoload off), against a PostgreSQL database created for the test and dropped after it:

``messenger_database``
    the name of a new, empty database (dropped afterwards, connections and all);
``messenger_env``
    the settings (environment mapping) pointing a server at it, with this run's Redis key prefix;
``messenger_plugins``
    which plugins to serve: override it, returning entry-point names (``("messenger_chats",)``)
    and/or a mapping ``{"name": plugin_object}`` (a module with ``@hookimpl`` functions);
``messenger_app``
    the served app (:class:`AppServer`: ``url``, ``client``, ``runtime``, ``app``), migrations applied;
``messenger_client``
    its :class:`Client`: ``await client.get(path)`` / ``post(path, body)`` / ``request(...)`` give a
    :class:`Response` with ``status``, ``json`` and ``headers``.

Helpers for the test body: :func:`assert_error` (the one error shape), :func:`poll` (wait for a
condition with a deadline, never sleep-and-hope), :func:`sql` (read the database directly),
:class:`TcpProxy` (cut PostgreSQL, Redis or RabbitMQ off without touching the servers) and
:func:`start_api` / :func:`start_consumer` for tests where real processes matter.

Where the services are comes from :class:`KitSettings` (``TEST_POSTGRES_HOST``,
``TEST_REDIS_URL``, ...), loopback by default.  The plugin author's guide, ``docs/plugins.md``,
shows a whole test module.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from psycopg import sql as pgsql
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from .app import MessengerApp, make_app
from .plugins import ENTRY_POINT_GROUP, PluginManager
from .settings import Section, Setting, integer, load_core, string

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover  # the kit's async fixtures then say what to install
    pytest_asyncio = None

#: Distinguishes this test run's databases, key prefixes and queue names from any other run's.
RUN_ID = uuid.uuid4().hex[:8]
#: The CACHE_SECRET of this run's test servers (every process of one test must share it, as in production).
RUN_SECRET = uuid.uuid4().hex + uuid.uuid4().hex
#: The directory of this interpreter's scripts (``messenger-api``, ``messenger-consumer``, ``pip``).
BIN = Path(sys.executable).parent


class KitSettings(Section):
    """Where the test services are (the kit's own settings, read from the test runner's environment)."""

    name = "testing"
    postgres_host = Setting("TEST_POSTGRES_HOST", string, "127.0.0.1", "PostgreSQL host of the test databases")
    postgres_port = Setting("TEST_POSTGRES_PORT", integer(1, 65535), 5432, "Its port")
    postgres_user = Setting("TEST_POSTGRES_USER", string, "postgres",
                            "A role that may CREATE DATABASE (each test gets its own)")
    postgres_pwd = Setting("TEST_POSTGRES_PWD", string, "", "Its password (empty: none / trust)")
    redis_url = Setting("TEST_REDIS_URL", string, "redis://127.0.0.1:6379/0",
                        "Redis of the tests (keys under a prefix of their own, removed by the tests that use them)")
    rmq_url = Setting("TEST_RMQ_URL", string, "amqp://guest:guest@127.0.0.1:5672/%2F",
                      "RabbitMQ of the tests that use one (by default tasks run on the embedded worker)")
    log_level = Setting("TEST_LOG_LEVEL", string, "WARNING",
                        "LOG_LEVEL of the servers the tests start (INFO or DEBUG to read what a failing one did)")


@functools.cache
def kit_settings() -> KitSettings:
    """The kit's settings, read once from the environment."""
    return KitSettings.from_env(os.environ)  # type: ignore[return-value]


# ---- databases --------------------------------------------------------------------------------

def conninfo(database: str) -> str:
    """libpq connection string of ``database`` on the test server."""
    kit = kit_settings()
    info = f"host={kit.postgres_host} port={kit.postgres_port} user={kit.postgres_user} dbname={database}"
    return info + (f" password={kit.postgres_pwd}" if kit.postgres_pwd else "")


def admin_conninfo() -> str:
    """The maintenance database of the test server."""
    return conninfo("postgres")


def create_database(prefix: str = "mt") -> str:
    """A new empty database named after this run; returns its name."""
    name = f"{prefix}_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


async def sql(database: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in a test database; its rows (empty for statements without rows)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]  # tests pass literal SQL
        return await cur.fetchall() if cur.description else []


def base_env(database: str, **overrides: Any) -> dict[str, str]:
    """Settings for a test server: ``database``, this run's key prefix and cache secret, one worker, quiet logs."""
    kit = kit_settings()
    env = {
        "POSTGRES_HOSTS": kit.postgres_host,
        "POSTGRES_PORT": str(kit.postgres_port),
        "POSTGRES_USER": kit.postgres_user,
        "POSTGRES_PWD": kit.postgres_pwd,
        "POSTGRES_DB": database,
        "REDIS_URL": kit.redis_url,
        "CACHE_PREFIX": f"mt-{RUN_ID}-{database[-6:]}:",
        "CACHE_SECRET": RUN_SECRET,
        "LOG_LEVEL": kit.log_level,
        "ACCESS_LOG": "0",
        "WORKERS": "1",
        "HOST": "127.0.0.1",
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return env


# ---- HTTP ---------------------------------------------------------------------------------------

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
    """An HTTP client bound to one base URL, optionally with default headers."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.http = AsyncHTTPClient(force_instance=True)

    def with_headers(self, **headers: str) -> "Client":
        """A client for the same server with extra default headers (``X_Name`` means ``X-Name``)."""
        merged = {**self.headers, **{k.replace("_", "-"): v for k, v in headers.items()}}
        return Client(self.base_url, merged)

    async def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                      headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Response:
        """Send one request; ``body`` is encoded as JSON, ``raw`` is sent as it is.

        Any status comes back as a :class:`Response`; only a failed connection raises
        ``ConnectionError``.
        """
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


def assert_error(resp: Response, status: int, code: str) -> None:
    """The one error shape: ``status`` with a JSON body ``{"message": code}``."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.json == {"message": code}, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")


# ---- the app in process -------------------------------------------------------------------------

def load_plugins(names: Iterable[str]) -> dict[str, Any]:
    """Installed plugins by entry-point name (group ``messenger.plugins``), loaded explicitly."""
    installed = {entry.name: entry for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    missing = sorted(set(names) - set(installed))
    if missing:
        raise LookupError(f"plugin(s) {', '.join(missing)} not installed; installed: {', '.join(sorted(installed))}")
    return {name: installed[name].load() for name in names}


@dataclass
class AppServer:
    """An in-process server: the app, its URL and a client."""

    app: MessengerApp
    url: str
    client: Client
    http_server: HTTPServer = field(repr=False)

    @property
    def runtime(self) -> Any:
        """The app's runtime (config, db, cache, queue, plugin state)."""
        return self.app.runtime


@asynccontextmanager
async def serve_app(env: Mapping[str, str], plugins: Iterable[str] = (),
                    extra: Mapping[str, Any] | None = None) -> AsyncIterator[AppServer]:
    """Run the real app on an unused loopback port in this event loop, migrations applied.

    ``plugins`` are installed plugins by entry-point name; ``extra`` registers plugin objects
    (``{"name": module_or_object}``).  Nothing else is loaded: autoload is off.
    """
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
    """Await ``check()`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
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


# ---- real processes -----------------------------------------------------------------------------

class Process:
    """A ``messenger-api`` or ``messenger-consumer`` subprocess with its log in a file.

    ``inherit_env=False`` gives it exactly ``env`` and nothing of the test runner's environment.
    A subprocess loads the installed plugins (autoload on); ``MESSENGER_APPS`` chooses among them.
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
                os.killpg(self.proc.pid, signal.SIGUSR1)  # each process prints its threads' stacks
                time.sleep(1.0)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                sys.stderr.write(f"{self.proc.args} did not stop within {timeout:.0f}s; its log:\n{self.log}\n")
        self.log_file.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log_file.close()


async def wait_serving(proc: Process, client: Client, path: str = "/ping_db", timeout: float = 30.0) -> None:
    """Poll ``path`` until it answers 200; fail at once, with the log, when the process exits."""
    async def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"{proc.proc.args} exited early ({proc.proc.returncode}):\n{proc.log}")
        try:
            return (await client.get(path, timeout=2)).status == 200
        except ConnectionError:
            return False
    await poll(up, timeout)


async def start_api(env: Mapping[str, str], log_path: Path, ready: str = "/ping_db",
                    timeout: float = 30.0, bin_dir: Path = BIN) -> tuple[Process, Client]:
    """Start ``messenger-api`` (from ``bin_dir``) on a free port; return once ``ready`` answers 200."""
    port = int(env.get("PORT") or free_port())
    proc = Process([str(bin_dir / "messenger-api")], {**env, "PORT": str(port)}, log_path)
    client = Client(f"http://127.0.0.1:{port}")
    await wait_serving(proc, client, ready, timeout)
    return proc, client


def start_consumer(env: Mapping[str, str], log_path: Path, bin_dir: Path = BIN) -> Process:
    """Start ``messenger-consumer`` (from ``bin_dir``); it logs 'consumer ready' once it consumes."""
    return Process([str(bin_dir / "messenger-consumer")], env, log_path)


def delete_rabbit_queue(queue: str, exchange: str) -> None:
    """Remove a test's RabbitMQ queue and exchange (they are durable: they outlive the test)."""
    conn = pika.BlockingConnection(pika.URLParameters(kit_settings().rmq_url))
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


# ---- the pytest plugin ----------------------------------------------------------------------------

def _async_fixture(name: str) -> Callable[[Callable[..., Any]], Any]:
    """An async fixture (pytest-asyncio's marker, so it works in its strict and auto modes)."""
    def mark(func: Callable[..., Any]) -> Any:
        if pytest_asyncio is None:  # pragma: no cover
            @pytest.fixture(name=name)
            def unavailable() -> None:
                pytest.fail("the messenger kit's async fixtures need pytest-asyncio: "
                            "pip install 'messenger-core[testing]'")
            return unavailable
        return pytest_asyncio.fixture(func, name=name)
    return mark


def pytest_report_header() -> str:
    """One header line: where the kit's services are and this run's id."""
    kit = kit_settings()
    return (f"messenger kit: PostgreSQL {kit.postgres_user}@{kit.postgres_host}:{kit.postgres_port}, "
            f"Redis {kit.redis_url}, run {RUN_ID}")


@pytest.fixture(name="messenger_database")
def messenger_database_fixture() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test (dropped afterwards)."""
    name = create_database()
    yield name
    drop_database(name)


@pytest.fixture(name="messenger_env")
def messenger_env_fixture(messenger_database: str) -> dict[str, str]:
    """Settings pointing a server at this test's database and key prefix (override to add your own)."""
    return base_env(messenger_database)


@pytest.fixture(name="messenger_plugins")
def messenger_plugins_fixture() -> Iterable[str] | Mapping[str, Any]:
    """The plugins ``messenger_app`` serves: none but the core.  Override it in your tests.

    Return entry-point names of installed plugins, or a mapping ``{"name": plugin_object}``.
    """
    return ()


@_async_fixture("messenger_app")
async def messenger_app_fixture(messenger_env: dict[str, str],
                                messenger_plugins: Iterable[str] | Mapping[str, Any]) -> AsyncIterator[AppServer]:
    """The real app with ``messenger_plugins``, on an unused port, migrations applied."""
    if isinstance(messenger_plugins, Mapping):
        server = serve_app(messenger_env, extra=messenger_plugins)
    else:
        server = serve_app(messenger_env, plugins=messenger_plugins)
    async with server as app_server:
        yield app_server


@pytest.fixture(name="messenger_client")
def messenger_client_fixture(messenger_app: AppServer) -> Client:
    """An HTTP client of ``messenger_app``."""
    return messenger_app.client
