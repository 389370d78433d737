"""Operations endpoints: ``GET /health`` (every configured dependency probed) and ``GET /metrics``.

``/health`` probes PostgreSQL (the readiness probe of ``/ping_db``, on its own connection), and
Redis and RabbitMQ when this process uses them, all at once, each within ``HEALTH_TIMEOUT``: a dead
or silent dependency costs that long, never a hang.  It says
nothing about hosts, versions or credentials.  ``/metrics`` is the Prometheus text of every worker
of the instance (:mod:`messenger_core.metrics`), for clients in ``METRICS_ALLOW`` only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from . import metrics
from .errors import not_found
from .web import BaseHandler

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"  # protocol 0-9-1: the broker answers with Connection.Start


async def amqp_answers(url: str) -> bool:
    """Whether a RabbitMQ at ``url`` answers the AMQP protocol header with a method frame on channel 0.

    It takes one TCP connection and no login: a broker that accepts connections but cannot start
    one (a full disk, an alarm) still answers this; publishing tells the rest.
    """
    parts = urlsplit(url)
    tls = parts.scheme == "amqps"
    reader, writer = await asyncio.open_connection(parts.hostname or "localhost",
                                                   parts.port or (5671 if tls else 5672), ssl=tls or None)
    try:
        writer.write(AMQP_HEADER)
        await writer.drain()
        frame = await reader.readexactly(7)
        return frame[0] == 1 and frame[1:3] == b"\x00\x00"
    finally:
        writer.close()


async def probe(check: Callable[[], Awaitable[Any]], timeout: float) -> dict[str, Any]:
    """``{"ok": bool, "ms": float}`` for one dependency: it answered truthily within ``timeout``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            ok = bool(await check())
    except Exception:  # pylint: disable=broad-exception-caught
        ok = False  # a timeout, a refused connection, redis-py's or psycopg's own errors: not healthy
    return {"ok": ok, "ms": round(1000.0 * (time.monotonic() - started), 1)}


class HealthHandler(BaseHandler):
    """Health of every dependency this process uses: ok, degraded (Redis or RabbitMQ down) or down."""

    public = True

    async def get(self) -> None:
        """Dependencies probed at once, each with a short timeout.
        ---
        summary: Health of PostgreSQL, Redis and RabbitMQ (those configured)
        tags: [health]
        responses:
          200:
            description: '"ok", or "degraded" when Redis or RabbitMQ does not answer; "checks" has one
              {"ok": bool, "ms": float} per dependency'
          503:
            description: '"down": PostgreSQL does not answer'
        """
        runtime = self.runtime
        timeout = runtime.config.health_timeout
        # the probe /ping_db shares, waited for up to HEALTH_TIMEOUT rather than /ping_db's 0.5 s
        checks: dict[str, Callable[[], Awaitable[Any]]] = {"postgres": lambda: runtime.db.ping(timeout)}
        if runtime.uses_redis:
            checks["redis"] = runtime.redis.ping
        if runtime.config.rmq_url:
            url = runtime.config.rmq_url
            checks["rabbitmq"] = lambda: amqp_answers(url)
        results = await asyncio.gather(*(probe(check, timeout) for check in checks.values()))
        report = dict(zip(checks, results))
        if not report["postgres"]["ok"]:
            status, code = "down", 503
        elif all(result["ok"] for result in results):
            status, code = "ok", 200
        else:
            status, code = "degraded", 200
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": status, "checks": report}, code)


def metrics_allowed(networks: tuple[Any, ...], address: str) -> bool:
    """Whether ``address`` is in METRICS_ALLOW."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class MetricsHandler(BaseHandler):
    """Prometheus metrics of every worker of this instance; 404 for a client outside METRICS_ALLOW."""

    public = True
    self_contained = True

    async def get(self) -> None:
        """Prometheus text format.
        ---
        summary: Prometheus metrics, summed over the instance's workers
        tags: [health]
        responses:
          200:
            description: Requests by method, route and status, latency by route, database pool, cache hits
              and misses, queued tasks, and the plugins' metrics (text/plain; version=0.0.4)
          404:
            description: 'not-found: the client is not in METRICS_ALLOW'
        """
        if not metrics_allowed(self.runtime.config.metrics_allow, self.client_ip):
            raise not_found()
        body, content_type = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


OPS_ROUTES: list[tuple[Any, ...]] = [
    (r"/health", HealthHandler),
    (r"/metrics", MetricsHandler),
]
