"""The results as Markdown: machine and settings, one table per workload family, and the targets."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pika
import psycopg
import redis
import tornado

from .measure import Memory, Row, Settings
from .search import SearchRow
from .stack import REDIS_URL, RMQ_URL, Stack
from .wrk import WRK


@dataclass
class Results:
    """Everything one run measured."""

    settings: Settings
    rows: dict[str, Row] = field(default_factory=dict)
    w4: dict[int, tuple[Row, Row]] = field(default_factory=dict)  # size -> (first page, deep page)
    searches: dict[int, SearchRow] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    builds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)


def machine(stack: Stack) -> list[str]:
    """What ran: CPU, memory, kernel, versions of the services and tools, date."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text("utf-8").splitlines()
                if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text("ascii").splitlines()
                  if line.startswith("MemTotal"))
    with psycopg.connect(stack.conninfo("postgres")) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()
    connection = pika.BlockingConnection(pika.URLParameters(RMQ_URL))
    try:
        rmq_version = connection._impl.server_properties.get("version", "?")  # pylint: disable=protected-access
        rmq_version = rmq_version.decode() if isinstance(rmq_version, bytes) else str(rmq_version)
    finally:
        connection.close()
    wrk_version = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False).stdout
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} × {cpu}, {mem_kb // 1024} MB RAM, Linux {platform.release()}",
        f"- software: Python {platform.python_version()}, Tornado {tornado.version}, PostgreSQL {pg_version}, "
        f"Redis {redis_version}, RabbitMQ {rmq_version}, {wrk_version.split('Copyright')[0].strip()}",
        "- server: `messenger-api` WORKERS=2 (SO_REUSEPORT), CACHE_TYPE=redis, auth on, NGINX_THROTTLING=1, "
        "RMQ_URL set + one `messenger-consumer`, LOG_LEVEL=WARNING, ACCESS_LOG=0"
        + "".join(f", **{name}={value}** (`--set`)" for name, value in stack.extra.items()),
    ]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def load_table(rows: list[Row]) -> list[str]:
    """requests/s, latencies, errors, CPU."""
    lines = ["| workload | req/s | p50 ms | p99 ms | errors | requests | API CPU (cores) | API CPU ms/req "
             "| PostgreSQL CPU ms/req | wrk CPU (cores) | rest of the machine (cores) | idle (cores) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.name} | {row.rps:.0f} | {_ms(row.p50_ms)} | {_ms(row.p99_ms)} | {row.errors} "
                     f"| {row.requests} | {row.server_cores:.2f} | {row.cpu_ms_per_request:.2f} "
                     f"| {row.pg_ms_per_request:.2f} | {row.wrk_cores:.2f} | {row.other_cores:.2f} "
                     f"| {row.idle_cores:.2f} |")
    return lines


def w4_table(w4: dict[int, tuple[Row, Row]], deep: dict[int, int]) -> list[str]:
    """First and deep page per chat length."""
    lines = ["| chat length | first page p50 / p99 ms | req/s | API / PostgreSQL CPU ms/req "
             "| deep page (`from` after #) | p50 / p99 ms | req/s | API / PostgreSQL CPU ms/req | errors |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, (first, deep_row) in sorted(w4.items()):
        lines.append(f"| {size:,} | {_ms(first.p50_ms)} / {_ms(first.p99_ms)} | {first.rps:.0f} "
                     f"| {first.cpu_ms_per_request:.2f} / {first.pg_ms_per_request:.2f} | {deep.get(size, 0):,} "
                     f"| {_ms(deep_row.p50_ms)} / {_ms(deep_row.p99_ms)} | {deep_row.rps:.0f} "
                     f"| {deep_row.cpu_ms_per_request:.2f} / {deep_row.pg_ms_per_request:.2f} "
                     f"| {first.errors + deep_row.errors} |")
    return lines


def search_table(searches: dict[int, SearchRow]) -> list[str]:
    """End-to-end search latency and correctness."""
    lines = ["| corpus | searches | correct | p50 ms | p99 ms | max ms | status polls (median) "
             "| server+consumer CPU ms/search |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, row in sorted(searches.items()):
        lines.append(f"| {size:,} messages | {row.searches} | {row.correct} | {_ms(row.p50_ms)} "
                     f"| {_ms(row.p99_ms)} | {_ms(row.max_ms)} | {row.polls:.0f} | {row.cpu_ms_per_search:.1f} |")
    return lines


def memory_table(memory: dict[str, Memory]) -> list[str]:
    """RSS after each workload."""
    lines = ["| after | API workers RSS MB | consumer RSS MB |", "|---|---:|---:|"]
    for snap in memory.values():
        workers = " / ".join(f"{mb:.0f}" for mb in snap.workers)
        consumer = "-" if snap.consumer is None else f"{snap.consumer:.0f}"
        lines.append(f"| {snap.after} | {workers} | {consumer} |")
    return lines


def _target(lines: list[str], name: str, measured: str, need: str, met: bool | None) -> None:
    mark = "n/a" if met is None else ("**met**" if met else "**MISSED**")
    lines.append(f"| {name} | {measured} | {need} | {mark} |")


def _by_cpu(row: Row, reference: Row) -> str:
    """The same ratio computed from the server CPU each request costs (immune to a busy machine)."""
    if not row.cpu_ms_per_request:
        return ""
    return f" (by CPU per request: {reference.cpu_ms_per_request / row.cpu_ms_per_request:.0%})"


def targets(res: Results) -> list[str]:  # pylint: disable=too-many-locals
    """The "Must reach" list of issue 8, computed from this run."""
    lines = ["| target | measured | required | |", "|---|---|---|---|"]
    rows = res.rows
    floor, ping = rows.get("hello-world floor"), rows.get("W1 GET /ping")
    if floor and ping:
        ratio = ping.rps / floor.rps
        _target(lines, "W1 vs hello-world (req/s)", f"{ping.rps:.0f} / {floor.rps:.0f} = {ratio:.1%}"
                f"{_by_cpu(ping, floor)}", "≥ 80 %", ratio >= 0.8)
    for key, need, label in (("W3 GET first page (cached)", 0.5, "W3 vs W1"),
                             ("W2 POST, 100 chats", 0.25, "W2 spread vs W1"),
                             ("W2 POST, one hot chat", 0.10, "W2 hot chat vs W1")):
        row = rows.get(key)
        if row and ping:
            ratio = row.rps / ping.rps
            _target(lines, label + " (req/s)", f"{row.rps:.0f} / {ping.rps:.0f} = {ratio:.1%}{_by_cpu(row, ping)}",
                    f"≥ {need:.0%}", ratio >= need)
    for key in ("W2 POST, one hot chat", "W2 POST, 100 chats"):
        if key in rows:
            ok, detail = res.checks.get(key, (False, "not checked"))
            errors = rows[key].errors
            _target(lines, f"{key}: no errors, every 201 durable", f"{errors} errors; {detail}",
                    "0 errors, all stored", ok and errors == 0)
    if res.w4:
        small, big = min(res.w4), max(res.w4)
        first, deep = res.w4[small][0], res.w4[big][1]
        ratio = deep.p50_ms / first.p50_ms if first.p50_ms else float("inf")
        _target(lines, f"W4 deep page of {big:,} vs first page of {small:,} (p50)",
                f"{_ms(deep.p50_ms)} / {_ms(first.p50_ms)} ms = {ratio:.2f}×", "≤ 1.3×", ratio <= 1.3)
    for size, row in sorted(res.searches.items()):
        limit = 100 if size <= 20_000 else 300
        _target(lines, f"W5 search on {size:,} messages", f"{row.correct}/{row.searches} correct, "
                f"p50 {_ms(row.p50_ms)} ms", f"all correct, p50 < {limit} ms",
                row.correct == row.searches and row.p50_ms < limit)
    if res.memory:
        top = max(mb for snap in res.memory.values() for mb in snap.workers)
        _target(lines, "API worker RSS after the workloads", f"max {top:.0f} MB", "< 150 MB", top < 150)
    return lines


def render(res: Results, stack: Stack, deep: dict[int, int]) -> str:
    """The whole report."""
    s = res.settings
    out = ["## Results", "", *machine(stack),
           f"- load: wrk, 1 thread, {s.connections} connections ({s.w4_connections} for W4), "
           f"{s.runs} run(s) of {s.seconds:g} s after a {s.warmup:g} s warm-up; medians of the runs", ""]
    if res.builds:
        out += ["Corpus build (SQL `INSERT ... SELECT generate_series`, indexes maintained): "
                + ", ".join(f"{name} {sec:.1f} s" for name, sec in res.builds.items()), ""]
    out += ["### Targets", "", *targets(res), ""]
    if res.rows:
        out += ["### Throughput (W1, W2, W3 and the floor)", "", *load_table(list(res.rows.values())), ""]
    if res.w4:
        out += ["### W4: paging cost vs chat length (page cache off, limit=100)", "", *w4_table(res.w4, deep), ""]
    if res.searches:
        out += ["### W5: search end to end (POST, poll, first page)", "", *search_table(res.searches), ""]
        for size, row in res.searches.items():
            for failure in row.failures:
                out.append(f"- wrong result on {size:,}: {failure}")
    if res.memory:
        out += ["### Memory (VmRSS)", "", *memory_table(res.memory), ""]
    failed = [f"- {name}: {detail}" for name, (ok, detail) in res.checks.items() if not ok]
    if failed:
        out += ["### Failed checks", "", *failed, ""]
    return "\n".join(out) + "\n"
