"""Measuring: repeated wrk runs with the server's CPU, medians of the runs, and memory snapshots."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from . import wrk
from .stack import CLK_TCK, PG_HOST, PG_USER, Process, cpu_seconds, rss_mb


@dataclass(frozen=True)
class Settings:
    """How long and how hard: the default full run, or ``--quick``."""

    seconds: float = 3.0
    warmup: float = 1.0
    runs: int = 5
    connections: int = 16
    w4_connections: int = 1
    w4_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    w5_sizes: tuple[int, ...] = (20_000, 1_000_000)
    searches: int = 30

    @classmethod
    def quick(cls) -> "Settings":
        """Small corpora, one short run each: a smoke test of the whole suite in about a minute."""
        return cls(seconds=2.0, warmup=0.5, runs=1, w4_sizes=(1_000, 10_000, 50_000), w5_sizes=(2_000, 50_000),
                   searches=10)


@dataclass
class Row:
    """One workload's numbers: medians over the runs (errors and ids over every run, warm-up included)."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cores: float
    cpu_ms_per_request: float
    wrk_cores: float
    other_cores: float
    pg_ms_per_request: float
    runs: int
    idle_cores: float = 0.0
    ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    note: str = ""


def pids_of(procs: list[Process]) -> list[int]:
    """Every process of these servers: the supervisors and their workers."""
    pids: list[int] = []
    for proc in procs:
        pids.append(proc.pid)
        pids.extend(pid for pid in proc.workers() if pid != proc.pid)
    return pids


def median(values: list[float]) -> float:
    """Median (0 for no values)."""
    return statistics.median(values) if values else 0.0


@dataclass
class Variant:
    """One workload to measure: its name, what wrk sends, the processes whose CPU counts, connections."""

    name: str
    base_url: str
    load: wrk.Load
    procs: list[Process]
    connections: int
    after_run: Callable[[str], None] | None = None
    database: str | None = None  # also count the CPU of the PostgreSQL backends serving this database


@dataclass
class _Samples:
    """What the runs of one variant measured so far."""

    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    per_request: list[float] = field(default_factory=list)
    wrk_cores: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    pg_per_request: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, result: wrk.Result) -> None:
        """Keep the ids, statuses and errors of a run (warm-up included)."""
        self.ids.extend(result.ids)
        for code, count in result.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + count
        self.errors += result.errors


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def pg_backends(database: str | None) -> list[int]:
    """Pids of the PostgreSQL backends connected to ``database`` (none when it is None)."""
    if database is None:
        return []
    with psycopg.connect(f"host={PG_HOST} user={PG_USER} dbname=postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return [row[0] for row in rows]


def run_rounds(variants: list[Variant], settings: Settings) -> dict[str, Row]:
    """A warm-up run of each variant, then ``settings.runs`` rounds that run every variant once.

    Interleaving the variants spreads whatever else the machine does over all of them alike, so
    their ratios stay meaningful on a shared machine.  Around each run: the server's CPU and the
    CPU the rest of the machine used ("others": neither the server, its PostgreSQL backends nor
    wrk) and the CPU left idle (a workload that leaves cores idle is bound by latency, not CPU).
    """
    samples = {variant.name: _Samples() for variant in variants}
    for variant in variants:
        samples[variant.name].add(wrk.run(variant.base_url, variant.load, settings.warmup, variant.connections))
    for _ in range(settings.runs):
        for variant in variants:
            got = samples[variant.name]
            pids, backends = pids_of(variant.procs), pg_backends(variant.database)
            before, pg_before, busy_before = cpu_seconds(pids), cpu_seconds(backends), machine_busy()
            result = wrk.run(variant.base_url, variant.load, settings.seconds, variant.connections)
            used, busy = cpu_seconds(pids) - before, machine_busy() - busy_before
            pg_used = cpu_seconds(backends) - pg_before
            got.pg_per_request.append(1000 * pg_used / max(1, result.requests))
            got.add(result)
            got.requests += result.requests
            got.rps.append(result.rps)
            got.p50.append(result.p50_ms)
            got.p99.append(result.p99_ms)
            got.cores.append(used / result.seconds)
            got.per_request.append(1000 * used / max(1, result.requests))
            got.wrk_cores.append(result.wrk_cpu / result.seconds)
            got.others.append(max(0.0, busy - used - pg_used - result.wrk_cpu) / result.seconds)
            got.idle.append(max(0.0, (os.cpu_count() or 1) - busy / result.seconds))
            if variant.after_run is not None:
                variant.after_run(variant.name)
    return {name: Row(name=name, rps=median(got.rps), p50_ms=median(got.p50), p99_ms=median(got.p99),
                      errors=got.errors, requests=got.requests, server_cores=median(got.cores),
                      cpu_ms_per_request=median(got.per_request), wrk_cores=median(got.wrk_cores),
                      other_cores=median(got.others), pg_ms_per_request=median(got.pg_per_request),
                      idle_cores=median(got.idle),
                      runs=settings.runs, ids=got.ids, statuses=got.statuses)
            for name, got in samples.items()}


@dataclass
class Memory:
    """Resident memory after one workload: each API worker and the consumer (MB)."""

    after: str
    workers: list[float]
    consumer: float | None


def memory(after: str, api: Process, consumer: Process | None) -> Memory:
    """VmRSS of the supervisor's children and of the consumer, now."""
    return Memory(after, [rss_mb(pid) for pid in api.workers()],
                  rss_mb(consumer.pid) if consumer is not None else None)
