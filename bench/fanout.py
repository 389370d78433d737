"""``python -m bench.fanout``: real-time delivery to thousands of held clients (issue 14, "Performance").

For each size N: ``messenger-api`` (the real stack of :mod:`bench.stack`, ``WORKERS=2``, auth on, the
stream plugin installed) is started afresh; 100 new chats, chat *i* owned by account *i*; N clients,
half WebSocket streams (``GET /v1/events``, the session in the upgrade's header, carrying the account's
chats) and half long-poll loops (``GET .../messages?limit=100&wait=W&from=<next.iterator>``), spread
evenly over the chats and over several load-generator processes (one event loop each).  Then:

1. the workers' RSS before any client, and their CPU over a quiet window;
2. the clients connect; the server's own gauges (``/metrics``) must show every stream open and every
   long-poll held; the workers' RSS again, and their CPU over a window with every client idle;
3. a poster process posts at a fixed rate, round robin over the chats, each message naming its chat
   and its number in that chat; the time of each 201 is recorded;
4. a grace period, then every generator hands over what each client received (the message numbers in
   arrival order, each with its arrival time) and the truth is read from PostgreSQL (each chat's
   messages in ``seq`` order).

Per message, latency is from its 201 to its arrival at a client: every delivery counts (per delivery),
and per message the arrival at its *last* subscriber (the issue's "at every subscriber").  Every client
must receive exactly its chat's messages, in the chat's order: lost, doubled and out-of-order are
counted.  Times come from ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the
machine).

The clients are cheap on purpose (the generator shares the 2 cores with the server): long-polls speak
HTTP/1.1 keep-alive over a bare ``asyncio.Protocol``, streams are ``tornado.websocket`` clients with a
message callback.  ``--profile`` runs the workers under cProfile (:mod:`bench.profiled`) and prints the
merged profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from . import corpus
from .measure import machine_busy, pg_backends
from .stack import BIN, PLUGINS, Stack, cpu_seconds, rss_mb

CHATS = 100
FANOUT_PLUGINS = PLUGINS + ",messenger_events"
PREFIX = "fanout"
LATE = 10.0  # seconds: a post not sent this long after it was due is skipped, an answer not come is given up


# ---- clients (run in the generator processes) ------------------------------------------------------

class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, answers with Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, float]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = content_length(head)
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[head_end + 4:end])
        del self.buffer[:end]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body, time.monotonic()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("connection lost"))

    async def request(self, raw: bytes) -> tuple[int, bytes, float]:
        """Send one whole request; (status, body, monotonic time the answer was complete)."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


def content_length(head: bytes) -> int:
    """The Content-Length of a response head (lower-cased), 0 without one."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17:end if end > 0 else len(head)])


async def connect(port: int) -> HttpConnection:
    """A new :class:`HttpConnection` to the server."""
    _, protocol = await asyncio.get_running_loop().create_connection(HttpConnection, "127.0.0.1", port)
    return protocol


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request, keep-alive."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def number_of(text: str) -> int:
    """The message number a text ``fanout <chat> <n>`` carries."""
    return int(text.rsplit(" ", 1)[1])


@dataclass
class Client:
    """One subscriber: what it received (message numbers, arrival times), errors, whether it is held."""

    kind: str  # "stream" or "poll"
    chat: int
    chat_id: str
    session: str
    numbers: array = field(default_factory=lambda: array("i"))
    times: array = field(default_factory=lambda: array("d"))
    errors: list[str] = field(default_factory=list)
    ready: bool = False
    answers: int = 0  # long-poll answers (200) received

    def got(self, text: str, when: float) -> None:
        """A message arrived."""
        self.numbers.append(number_of(text))
        self.times.append(when)


class Generator:
    """One load-generator process: its share of the clients, one event loop."""

    def __init__(self, port: int, clients: list[Client], wait: int) -> None:
        self.port = port
        self.clients = clients
        self.wait = wait
        self.stopping = False
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def stream(self, client: Client, connected: asyncio.Future[None]) -> None:
        """A WebSocket stream: ready, then every message frame of the account's chats."""
        # pylint: disable=import-outside-toplevel
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        def on_frame(raw: str | bytes | None) -> None:
            if raw is None:
                if not self.stopping:
                    client.errors.append(f"closed {conn.close_code}")
                return
            when = time.monotonic()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "message":
                client.got(frame["message"]["text"], when)
            elif kind == "ready":
                client.ready = True
                if not connected.done():
                    connected.set_result(None)
            elif kind not in ("chat_joined",):
                client.errors.append(f"frame {kind}: {raw!r:.100}")

        url = f"ws://127.0.0.1:{self.port}/v1/events"
        try:
            conn = await websocket_connect(
                HTTPRequest(url, headers={"Authorization": f"session_id {client.session}"}, connect_timeout=30,
                            request_timeout=30),
                on_message_callback=on_frame, ping_interval=None)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            client.errors.append(f"connect: {exc!r}")
            if not connected.done():
                connected.set_result(None)
            return
        self.sockets.append(conn)

    async def poll(self, client: Client, connected: asyncio.Future[None]) -> None:
        """A long-poll loop: each answer's messages, then again from its ``next.iterator``."""
        try:
            conn = await connect(self.port)
        except OSError as exc:
            client.errors.append(f"connect: {exc!r}")
            connected.set_result(None)
            return
        self.sockets.append(conn)
        headers = {"Authorization": f"session_id {client.session}"}
        base = f"/v1/chats/{client.chat_id}/messages?limit=100&wait={self.wait}"
        iterator = ""
        while not self.stopping:
            raw = request_bytes("GET", base + (f"&from={iterator}" if iterator else ""), headers)
            if not connected.done():
                client.ready = True
                asyncio.get_running_loop().call_later(  # by then the request has reached the server
                    0.05, lambda: connected.done() or connected.set_result(None))
            try:
                status, body, when = await conn.request(raw)
            except ConnectionError:
                if not self.stopping:
                    client.errors.append("connection lost")
                return
            if status != 200:
                client.errors.append(f"status {status}: {body[:100]!r}")
                await asyncio.sleep(0.5)
                continue
            client.answers += 1
            page = json.loads(body)
            for message in page["messages"]:
                client.got(message["text"], when)
            iterator = page["next"]["iterator"]

    async def open_all(self, concurrency: int = 16) -> None:
        """Open every client, at most ``concurrency`` openings at a time, until each is held."""
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> None:
            async with gate:
                connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                runner = self.stream if client.kind == "stream" else self.poll
                self.tasks.append(asyncio.ensure_future(runner(client, connected)))
                try:
                    await asyncio.wait_for(connected, 30)
                except asyncio.TimeoutError:
                    client.errors.append("not ready after 30 s")
        await asyncio.gather(*(one(client) for client in self.clients))

    def close_all(self) -> None:
        """Hang up every client."""
        self.stopping = True
        for conn in self.sockets:
            conn.close()
        for task in self.tasks:
            task.cancel()


def generator_main(pipe: multiprocessing.connection.Connection, port: int, clients: list[Client],
                   wait: int) -> None:
    """A generator process: ``connect`` opens its clients, ``collect`` hands over what they received."""
    async def serve() -> None:
        gen = Generator(port, clients, wait)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "connect":
                await gen.open_all()
                pipe.send(sum(1 for client in clients if client.ready and not client.errors))
            elif command == "count":
                pipe.send(sum(client.answers for client in clients))
            elif command == "collect":
                gen.close_all()
                await asyncio.sleep(0.2)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                pipe.send(([(c.kind, c.chat, c.numbers, c.times, c.errors) for c in clients],
                           usage.ru_utime + usage.ru_stime))
                return
    asyncio.run(serve())


class IdleStreams:
    """Streams held open and idle during other benchmarks (``python -m bench.run --idle-streams N``).

    One generator process opens ``count`` streams of one account, which carries one chat nobody posts
    in, and keeps them until :meth:`close`.
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.pipe: multiprocessing.connection.Connection | None = None
        self.proc: Any = None

    def open(self, chat_id: str, session: str) -> int:
        """Open the streams; how many got their "ready"."""
        ctx = multiprocessing.get_context("fork")
        self.pipe, child = ctx.Pipe()
        clients = [Client("stream", 0, chat_id, session) for _ in range(self.count)]
        self.proc = ctx.Process(target=generator_main, args=(child, self.port, clients, 30), daemon=True)
        self.proc.start()
        self.pipe.send("connect")
        return int(self.pipe.recv())

    def close(self) -> list[str]:
        """Hang up; the errors the streams saw (a stream closed by the server is one)."""
        if self.pipe is None:
            return []
        self.pipe.send("collect")
        received, _ = self.pipe.recv()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        self.pipe = self.proc = None
        return [error for *_, errors in received for error in errors]


# ---- the poster ------------------------------------------------------------------------------------

@dataclass
class Posted:
    """One post: its chat, number, when it was due, sent, and answered, and the status."""

    chat: int
    number: int
    due: float
    sent: float
    answered: float
    status: int


async def post_at_rate(port: int, chats: list[tuple[str, str, str]], rate: float, seconds: float,
                       connections: int) -> list[Posted]:
    """``rate`` posts a second for ``seconds``, round robin over ``chats`` (chat id, member id, session)."""
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    done: list[Posted] = []

    async def worker() -> None:
        conn = await connect(port)
        try:
            while True:
                job = await queue.get()
                if job is None:
                    return
                index, due = job
                chat, number = index % len(chats), index // len(chats) + 1
                if time.monotonic() > due + LATE:
                    done.append(Posted(chat, number, due, 0.0, 0.0, -1))  # the server fell behind: not sent
                    continue
                chat_id, member_id, session = chats[chat]
                body = json.dumps({"message": f"{PREFIX} {chat} {number}"}).encode()
                raw = request_bytes("POST", f"/v1/chats/{chat_id}/messages?user_id={member_id}",
                                    {"Authorization": f"session_id {session}", "Content-Type": "application/json"},
                                    body)
                sent = time.monotonic()
                try:
                    status, _, answered = await asyncio.wait_for(conn.request(raw), LATE)
                except (ConnectionError, asyncio.TimeoutError):
                    conn.close()
                    status, answered = 0, time.monotonic()
                    conn = await connect(port)
                done.append(Posted(chat, number, due, sent, answered, status))
        finally:
            conn.close()

    workers = [asyncio.ensure_future(worker()) for _ in range(connections)]
    start = time.monotonic() + 0.05
    for index in range(total):
        due = start + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return done


def poster_main(pipe: multiprocessing.connection.Connection, port: int, chats: list[tuple[str, str, str]],
                rate: float, seconds: float, connections: int) -> None:
    """The poster process: waits for ``post``, posts, sends back every :class:`Posted` and its CPU."""
    pipe.recv()
    posted = asyncio.run(post_at_rate(port, chats, rate, seconds, connections))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send(([(p.chat, p.number, p.due, p.sent, p.answered, p.status) for p in posted],
               usage.ru_utime + usage.ru_stime))


# ---- measuring -------------------------------------------------------------------------------------

@dataclass
class Window:
    """CPU used over a window by the server, the load generators, the poster, PostgreSQL, the whole machine."""

    seconds: float
    server: float
    generators: float
    poster: float
    postgres: float
    machine: float

    def cores(self, what: float) -> float:
        """CPU seconds over the window as cores."""
        return what / self.seconds if self.seconds else 0.0


class Meter:
    """CPU of a set of processes around a window."""

    def __init__(self, server: list[int], generators: list[int], database: str,
                 poster: list[int] | None = None) -> None:
        self.server, self.generators, self.database = server, generators, database
        self.poster = poster or []
        self.backends = pg_backends(database)
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float, float, float]:
        return (time.monotonic(), cpu_seconds(self.server), cpu_seconds(self.generators), cpu_seconds(self.poster),
                cpu_seconds(self.backends), machine_busy())

    def stop(self) -> Window:
        """The window since this meter was made."""
        end = self._now()
        diff = [b - a for a, b in zip(self.start, end)]
        return Window(*diff)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, int(round(share * len(values) + 0.5)) - 1))]


@dataclass
class SizeResult:  # pylint: disable=too-many-instance-attributes
    """What one size measured."""

    clients: int
    streams: int
    polls: int
    connected: int
    posts: int
    posted_ok: int
    post_seconds: float
    deliveries: int
    delivery_ms: list[float]
    last_ms: list[float]
    post_ms: list[float]
    lost: dict[str, int]
    doubled: int
    out_of_order: int
    early: int
    errors: list[str]
    rss_idle: list[float]
    rss_connected: list[float]
    quiet: Window
    idle: Window
    load: Window
    poster_cpu: float
    generator_cpu: float
    loadavg: str
    idle_answers: int = 0  # long-poll answers the clients received in the idle window

    def idle_server_cpu(self) -> float:
        """Server CPU seconds the idle clients cost over the idle window (beyond the quiet window's rate)."""
        return self.idle.server - self.quiet.cores(self.quiet.server) * self.idle.seconds

    def row(self) -> dict[str, str]:
        """The table row."""
        kb = 1024 * (sum(self.rss_connected) - sum(self.rss_idle)) / max(1, self.connected)
        d = sorted(self.delivery_ms)
        last = sorted(self.last_ms)
        idle_cpu = self.idle.cores(self.idle.server) - self.quiet.cores(self.quiet.server)
        rest = max(0.0, self.load.machine - self.load.server - self.load.postgres - self.load.generators
                   - self.load.poster)
        per_answer = (f"{1e6 * self.idle_server_cpu() / self.idle_answers:.0f} ({self.idle_answers:,} answers)"
                      if self.idle_answers else "-")
        return {
            "clients (streams + polls)": f"{self.clients:,} ({self.streams:,} + {self.polls:,})",
            "posts/s (201s)": f"{self.posted_ok / self.post_seconds:.0f} ({self.posted_ok:,})",
            "deliveries": f"{self.deliveries:,}",
            "p50 / p95 / p99 / max ms": " / ".join(f"{percentile(d, q):.0f}" for q in (0.5, 0.95, 0.99, 1.0)),
            "every subscriber p50 / p99 ms": f"{percentile(last, 0.5):.0f} / {percentile(last, 0.99):.0f}",
            "post 201 p50 / p99 ms": f"{percentile(sorted(self.post_ms), 0.5):.0f} / "
                                     f"{percentile(sorted(self.post_ms), 0.99):.0f}",
            "lost (streams + polls) / doubled / out of order":
                f"{self.lost['stream']} + {self.lost['poll']} / {self.doubled} / {self.out_of_order}",
            "worker RSS idle → connected MB": f"{sum(self.rss_idle):.0f} → {sum(self.rss_connected):.0f}",
            "KB per connection": f"{kb:.1f}",
            "idle clients: server CPU": f"{100 * idle_cpu:.1f} % of a core",
            "idle: server CPU µs per long-poll answer (pings included)": per_answer,
            "server CPU µs per delivery": f"{1e6 * self.load.server / max(1, self.deliveries):.0f}",
            "generators' CPU µs per delivery": f"{1e6 * self.load.generators / max(1, self.deliveries):.0f}",
            "under load: server / PG / generators / poster / rest (cores)": " / ".join(
                f"{self.load.cores(part):.2f}"
                for part in (self.load.server, self.load.postgres, self.load.generators, self.load.poster, rest)),
        }


def analyse(truth: dict[int, list[int]],  # pylint: disable=too-many-locals
            posted: list[tuple[int, int, float, float, float, int]],
            received: list[tuple[str, int, array, array, list[str]]]) -> dict[str, Any]:
    """Latencies, losses, duplicates and order, from what each client got and each chat's truth."""
    answered = {(chat, number): t201 for chat, number, _, _, t201, status in posted if status == 201}
    delivery: list[float] = []
    last: dict[tuple[int, int], float] = {}
    doubled = disorder = early = 0
    lost = {"stream": 0, "poll": 0}
    errors: list[str] = []
    for kind, chat, numbers, times, errs in received:
        errors.extend(errs)
        expected = truth.get(chat, [])
        got = list(numbers)
        seen = set(got)
        doubled += len(got) - len(seen)
        lost[kind] += sum(1 for number in expected if number not in seen)
        if len(seen) == len(got) and [number for number in expected if number in seen] != got:
            disorder += 1
        for number, when in zip(got, times):
            t201 = answered.get((chat, number))
            if t201 is None:
                continue
            ms = 1000 * (when - t201)
            early += ms < 0
            delivery.append(ms)
            key = (chat, number)
            last[key] = max(last.get(key, -1e9), ms)
    return {"delivery": delivery, "last": list(last.values()), "lost": lost, "doubled": doubled,
            "disorder": disorder, "early": early, "errors": errors}


def gauges(base_url: str) -> tuple[float, float]:
    """(long-polls held, streams open) from ``/metrics`` (summed over the workers)."""
    import urllib.request  # pylint: disable=import-outside-toplevel
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    held = opened = 0.0
    for line in text.splitlines():
        if line.startswith("messenger_longpolls_held"):
            held += float(line.rsplit(" ", 1)[1])
        elif line.startswith("messenger_streams_open"):
            opened += float(line.rsplit(" ", 1)[1])
    return held, opened


# ---- the run ---------------------------------------------------------------------------------------

class Fanout:  # pylint: disable=too-many-instance-attributes
    """Every size of one run on one stack."""

    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.accounts: list[corpus.Account] = []
        self.results: list[SizeResult] = []
        self.profiles: list[str] = []

    def say(self, text: str) -> None:
        """Progress on stderr."""
        print(f"[fanout {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def start_api(self, name: str, **overrides: str) -> Any:
        """The server under test (under cProfile with ``--profile``)."""
        env = {"MESSENGER_APPS": FANOUT_PLUGINS, **overrides}
        command = None
        if self.args.profile:
            profile_dir = self.stack.log_dir / f"profile-{name}"
            profile_dir.mkdir()
            env["BENCH_PROFILE_DIR"] = str(profile_dir)
            command = [str(BIN / "python"), "-m", "bench.profiled"]
        return self.stack.start_api(name, command, **env)

    def _profile(self, workers: list[int], phase: str) -> None:
        """With ``--profile PHASE``: turn the workers' profilers on or off around that phase."""
        if self.args.profile == phase:
            for pid in workers:
                os.kill(pid, signal.SIGUSR2)

    def run(self) -> None:
        """Set up the accounts, then measure every size; the stack is always cleaned up."""
        try:
            self.stack.create_database()
            api = self.start_api("api-setup", REGISTER_PER_MINUTE="1000", LOGIN_ATTEMPTS_PER_MINUTE="1000")
            self.say(f"database {self.stack.database}: registering {CHATS} accounts")
            self.accounts = [corpus.register(self.stack, f"fanout-{i}") for i in range(CHATS)]
            self.stack.stop(api)
            for size in self.args.clients:
                self.results.append(self.one(size))
        finally:
            self.say("cleaning up")
            self.stack.cleanup()

    def one(self, size: int) -> SizeResult:  # pylint: disable=too-many-locals,too-many-statements
        """Measure one size on a fresh server."""
        args = self.args
        api = self.start_api(f"api-{size}")
        url = self.stack.base_url
        chats = []
        for index, account in enumerate(self.accounts):
            chat = corpus.create_chat(self.stack, account, f"fanout {size} {index}")
            chats.append((chat.chat_id, chat.member_id, account.session))
        workers = api.workers()
        time.sleep(2.0)
        rss_idle = [rss_mb(pid) for pid in workers]
        quiet_meter = Meter(workers, [], self.stack.database)
        time.sleep(args.quiet_seconds)
        quiet = quiet_meter.stop()

        if args.kinds == "both":  # half and half, in every chat
            clients = [Client("stream" if j % 2 == 0 else "poll", (j // 2) % CHATS, "", "") for j in range(size)]
        else:
            clients = [Client(args.kinds[:-1], j % CHATS, "", "") for j in range(size)]
        for client in clients:
            client.chat_id, client.session = chats[client.chat][0], chats[client.chat][2]
        ctx = multiprocessing.get_context("fork")
        pipes, procs = [], []
        for g in range(args.generators):
            parent, child = ctx.Pipe()
            share = clients[g::args.generators]
            proc = ctx.Process(target=generator_main, args=(child, self.stack.port, share, args.wait), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        poster_pipe, poster_child = ctx.Pipe()
        poster = ctx.Process(target=poster_main, args=(poster_child, self.stack.port, chats, args.rate,
                                                       args.seconds, args.post_connections), daemon=True)
        poster.start()
        generator_pids = [proc.pid for proc in procs if proc.pid is not None]
        try:
            self.say(f"{size:,} clients: connecting")
            started = time.monotonic()
            for pipe in pipes:
                pipe.send("connect")
            connected = sum(pipe.recv() for pipe in pipes)
            deadline = time.monotonic() + 30
            held, opened = gauges(url)
            while held + opened < connected and time.monotonic() < deadline:
                time.sleep(0.5)
                held, opened = gauges(url)
            self.say(f"{connected:,} of {size:,} connected in {time.monotonic() - started:.1f} s; "
                     f"the server holds {held:.0f} long-polls and {opened:.0f} streams")
            time.sleep(1.0)
            rss_connected = [rss_mb(pid) for pid in workers]
            answers_before = self._answers(pipes)
            idle_meter = Meter(workers, generator_pids, self.stack.database)
            self._profile(workers, "idle")
            time.sleep(args.idle_seconds)
            idle = idle_meter.stop()
            self._profile(workers, "idle")
            idle_answers = self._answers(pipes) - answers_before
            self.say(f"idle: server {100 * idle.cores(idle.server):.1f} % of a core; posting {args.rate:.0f}/s "
                     f"for {args.seconds:.0f} s")
            load_meter = Meter(workers, generator_pids, self.stack.database, [poster.pid or 0])
            self._profile(workers, "load")
            poster_pipe.send("post")
            posted, poster_cpu = poster_pipe.recv()
            load = load_meter.stop()
            self._profile(workers, "load")
            time.sleep(args.grace)
            for pipe in pipes:
                pipe.send("collect")
            received, generator_cpu = [], 0.0
            for pipe in pipes:
                got, cpu = pipe.recv()
                received.extend(got)
                generator_cpu += cpu
        finally:
            for proc in [*procs, poster]:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
        loadavg = Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]
        self.stack.stop(api)
        if args.profile:
            from .profiled import summary  # pylint: disable=import-outside-toplevel
            self.profiles.append(f"## {size:,} clients\n\n" + summary(self.stack.log_dir / f"profile-api-{size}"))
        truth = self.truth([chat_id for chat_id, _, _ in chats])
        found = analyse(truth, posted, received)
        answered = [p for p in posted if p[5] == 201]
        post_seconds = max(p[4] for p in posted) - min(p[2] for p in posted) if posted else 1.0
        result = SizeResult(
            clients=size, streams=sum(c.kind == "stream" for c in clients),
            polls=sum(c.kind == "poll" for c in clients), connected=connected, posts=len(posted),
            posted_ok=len(answered), post_seconds=post_seconds, deliveries=len(found["delivery"]),
            delivery_ms=found["delivery"], last_ms=found["last"],
            post_ms=[1000 * (p[4] - p[3]) for p in answered], lost=found["lost"], doubled=found["doubled"],
            out_of_order=found["disorder"], early=found["early"], errors=found["errors"], rss_idle=rss_idle,
            rss_connected=rss_connected, quiet=quiet, idle=idle, load=load, poster_cpu=poster_cpu,
            generator_cpu=generator_cpu, loadavg=" ".join(loadavg), idle_answers=idle_answers)
        self.say(" | ".join(f"{k}: {v}" for k, v in result.row().items()))
        if result.errors:
            self.say(f"{len(result.errors)} client error(s), first: {result.errors[:5]}")
        return result

    @staticmethod
    def _answers(pipes: list[multiprocessing.connection.Connection]) -> int:
        """Long-poll answers the generators' clients received so far."""
        for pipe in pipes:
            pipe.send("count")
        return sum(int(pipe.recv()) for pipe in pipes)

    def truth(self, chat_ids: list[str]) -> dict[int, list[int]]:
        """Each chat's message numbers in ``seq`` order, from PostgreSQL."""
        index = {uuid.UUID(chat_id): i for i, chat_id in enumerate(chat_ids)}
        with psycopg.connect(self.stack.conninfo()) as conn:
            rows = conn.execute("SELECT chat_id, text FROM messages WHERE chat_id = ANY(%s) ORDER BY chat_id, seq",
                                (list(index),)).fetchall()
        truth: dict[int, list[int]] = {i: [] for i in index.values()}
        for chat_id, text in rows:
            truth[index[chat_id]].append(number_of(text))
        return truth


def render(results: list[SizeResult], args: argparse.Namespace) -> str:
    """The Markdown table."""
    if not results:
        return "(nothing measured)\n"
    head = list(results[0].row())
    lines = [f"- date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; load average at the end of each "
             f"size: {', '.join(r.loadavg for r in results)}",
             f"- clients: {args.kinds}; {CHATS} chats, {args.rate:.0f} posts/s for {args.seconds:.0f} s over "
             f"{args.post_connections} connections, long-poll wait={args.wait}, {args.generators} generator processes "
             f"+ 1 poster; "
             f"idle window {args.idle_seconds:.0f} s, quiet window {args.quiet_seconds:.0f} s",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        lines.append("| " + " | ".join(result.row().values()) + " |")
    lines.append("")
    for result in results:
        extra = [f"{result.connected:,} of {result.clients:,} connected",
                 f"{result.early:,} deliveries arrived before their post's 201 (counted as negative latency)",
                 f"generators + poster CPU {result.generator_cpu + result.poster_cpu:.1f} s",
                 f"{len(result.errors)} client errors"]
        lines.append(f"- {result.clients:,}: " + "; ".join(extra))
    return "\n".join(lines) + "\n"


def sizes(raw: str) -> list[int]:
    """``500,1000`` as a list."""
    return [int(part.replace("_", "")) for part in raw.split(",") if part.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=sizes, default=[500, 1000, 2000, 5000],
                        help="comma list of client counts, one fresh server each (default 500,1000,2000,5000)")
    parser.add_argument("--kinds", choices=("both", "streams", "polls"), default="both",
                        help="half streams and half long-polls (default), or all of one kind")
    parser.add_argument("--rate", type=float, default=200.0, help="posts per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="posting time per size (default 20)")
    parser.add_argument("--wait", type=int, default=30, help="the long-polls' wait= (default 30)")
    parser.add_argument("--generators", type=int, default=3, help="load-generator processes (default 3)")
    parser.add_argument("--post-connections", type=int, default=16, help="the poster's connections (default 16)")
    parser.add_argument("--idle-seconds", type=float, default=30.0,
                        help="window with every client connected and idle (default 30: each long-poll "
                             "times out and asks again once)")
    parser.add_argument("--quiet-seconds", type=float, default=10.0, help="window with no client (default 10)")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds after the last post before collecting")
    parser.add_argument("--profile", choices=("idle", "load"),
                        help="run the workers under cProfile during that phase (every client idle, or posting); "
                             "print the profile")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                        help="a server setting (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size; print the table."""
    args = parse(argv)
    extra = dict(item.split("=", 1) for item in args.settings)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    stack = Stack(log_dir, extra=extra)
    bench = Fanout(stack, args)
    bench.say(f"server logs in {log_dir}")
    bench.run()
    report = render(bench.results, args)
    print(report)
    if args.profile:
        text = "\n".join(bench.profiles)
        (log_dir / "profile.txt").write_text(text)
        print(f"profile: {log_dir / 'profile.txt'}", file=sys.stderr)
    if args.output:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
