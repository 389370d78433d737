"""The stack under test: a fresh database, settings, server processes, and what they cost (CPU, RSS).

Every run gets its own database ``bench_<id>``, Redis key prefix and RabbitMQ names, so it never
touches another run's data or the tests running beside it; :meth:`Stack.cleanup` removes them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psycopg
import redis
from psycopg import sql

from messenger_core.settings import load_core

BIN = Path(sys.executable).parent
PG_HOST = "127.0.0.1"
PG_USER = "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
RMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PLUGINS = "messenger_auth,messenger_chats,messenger_search,messenger_throttle"


@contextmanager
def scratch_database(host: str, user: str, prefix: str) -> Iterator[str]:
    """A new empty database ``<prefix>_<random>`` for one bench, dropped afterwards whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = f"host={host} user={user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """One request; returns (status, the JSON body or None).  For set-up and checks, not for load."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, kind = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, (json.loads(raw) if raw and kind.startswith("application/json") else None)


# ---- /proc ---------------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the supervisor's workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(item) for item in text.split()]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds (0 for a process that is gone)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process in MB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---- processes -----------------------------------------------------------------------------------

class Process:
    """A server subprocess in its own session, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, **env}
        full_env.pop("MESSENGER_DISABLE_PLUGIN_AUTOLOAD", None)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                command, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        """The top process (the supervisor for a multi-worker server)."""
        return self.proc.pid

    def workers(self) -> list[int]:
        """The serving processes: the supervisor's children, or the process itself."""
        return children(self.pid) or [self.pid]

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL to the process group if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wait_http(proc: Process, url: str, timeout: float = 40.0, streak: int = 20) -> None:
    """Until ``url`` answered 200 ``streak`` times in a row (every worker is up); raise on exit/timeout."""
    deadline = time.monotonic() + timeout
    good = 0
    while good < streak:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.log_tail()}")
        try:
            good = good + 1 if http("GET", url, timeout=2)[0] == 200 else 0
        except OSError:
            good = 0
        if good == 0:
            time.sleep(0.1)


def wait_log(proc: Process, text: str, timeout: float = 40.0) -> None:
    """Until the process's log contains ``text``."""
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text(errors="replace"):
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: no {text!r} after {timeout}s:\n{proc.log_tail()}")
        time.sleep(0.1)


# ---- the stack -----------------------------------------------------------------------------------

@dataclass
class Stack:
    """One benchmark run's database, names, settings and running processes."""

    log_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    #: settings given with ``--set``: applied to every server start, over the stack's own
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> str:
        """This run's database name."""
        return f"bench_{self.run_id}"

    @property
    def prefix(self) -> str:
        """This run's Redis key prefix."""
        return f"bench-{self.run_id}:"

    @property
    def base_url(self) -> str:
        """Where the server under test listens."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The real stack: PostgreSQL, Redis cache, 2 workers, auth on, in-app throttle off, RabbitMQ."""
        env = {
            "HOST": "127.0.0.1", "PORT": str(self.port), "WORKERS": "2",
            "POSTGRES_HOSTS": PG_HOST, "POSTGRES_USER": PG_USER, "POSTGRES_DB": self.database,
            "CACHE_TYPE": "redis", "REDIS_URL": REDIS_URL, "CACHE_PREFIX": self.prefix,
            "RMQ_URL": RMQ_URL,
            "SEARCH_EXCHANGE": f"bench_{self.run_id}_exchange", "SEARCH_QUEUE": f"bench_{self.run_id}_queue",
            "SEARCH_ROUTING_KEY": f"bench_{self.run_id}",
            "AUTH_DISABLED": "0", "NGINX_THROTTLING": "1", "MESSENGER_APPS": PLUGINS,
            "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0",
        }
        env.update(overrides)
        env.update(self.extra)
        return env

    def conninfo(self, database: str | None = None) -> str:
        """libpq string for this run's database (or another one)."""
        return f"host={PG_HOST} user={PG_USER} dbname={database or self.database}"

    def create_database(self) -> None:
        """CREATE DATABASE bench_<id> and apply every plugin's migrations."""
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        subprocess.run([str(BIN / "messenger-api"), "migrate"], env={**os.environ, **self.env()},
                       check=True, capture_output=True)

    def start_api(self, name: str, command: list[str] | None = None, **overrides: str) -> Process:
        """``messenger-api`` (or ``command``) with the stack's settings; returns once both workers answer."""
        proc = Process(name, command or [str(BIN / "messenger-api")], self.env(**overrides), self.log_dir)
        self.processes.append(proc)
        wait_http(proc, self.base_url + "/ping_db")
        deadline = time.monotonic() + 10
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc

    def start_consumer(self) -> Process:
        """``messenger-consumer`` on this run's queue; returns once it consumes."""
        proc = Process("consumer", [str(BIN / "messenger-consumer")], self.env(LOG_LEVEL="INFO"), self.log_dir)
        self.processes.append(proc)
        wait_log(proc, "consumer ready")
        return proc

    def start_hello(self, port: int) -> Process:
        """The plain Tornado hello-world (2 processes, SO_REUSEPORT) on ``port``, on the service's event loop."""
        loop = load_core(self.env()).event_loop
        proc = Process("hello", [sys.executable, "-m", "bench.hello", str(port), "2", loop], {}, self.log_dir)
        self.processes.append(proc)
        wait_http(proc, f"http://127.0.0.1:{port}/")
        deadline = time.monotonic() + 10
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc

    def stop(self, proc: Process) -> None:
        """Stop one process (and forget it)."""
        proc.stop()
        if proc in self.processes:
            self.processes.remove(proc)

    def cleanup(self) -> None:
        """Stop what still runs; drop the database, the Redis keys and the RabbitMQ queue and exchange."""
        for proc in list(self.processes):
            self.stop(proc)
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
        client = redis.Redis.from_url(REDIS_URL)
        try:
            batch = list(client.scan_iter(match=self.prefix + "*", count=1000))
            for start in range(0, len(batch), 500):
                client.delete(*batch[start:start + 500])
        finally:
            client.close()
        env = self.env()
        connection = pika.BlockingConnection(pika.URLParameters(RMQ_URL))
        try:
            channel = connection.channel()
            channel.queue_delete(env["SEARCH_QUEUE"])
            channel.exchange_delete(env["SEARCH_EXCHANGE"])
        finally:
            connection.close()
