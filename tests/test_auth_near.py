"""Sessions held near (CACHE_TYPE=redis): a hot session costs no Redis round trip, and a logout still
ends it in every worker process at once, also when a process loses its link to Redis.

Whether a process answers from its own copy is seen from outside by replacing the session's Redis entry
with an expired copy of itself (sealed with the test servers' CACHE_SECRET, as the server would): a
process that reads Redis answers 401 ``session-id-expired``, one that holds the session answers as if it
were valid.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

from messenger_core import Signer
from messenger_core.testing import RUN_SECRET

from auth_support import PROBE, authenticated, bearer, login, new_session, probe, register, session_group
from support import AppServer, Client, Process, Response, TcpProxy, assert_error, poll, serve_app, start_api

AUTH_ONLY = ("messenger_auth",)
ACCESS = re.compile(r"\[(\d+)\] messenger\.access: \d{3} GET " + re.escape(PROBE) + r"\?probe=(\w+) ")


SIGNER = Signer(RUN_SECRET.encode())


group = session_group


async def tagged_probe(client: Client, session_id: str) -> tuple[str, Response]:
    """Probe with a tag that finds the request's line (and worker pid) in the access log."""
    tag = uuid.uuid4().hex
    return tag, await client.get(f"{PROBE}?probe={tag}", headers=bearer(session_id))


async def workers_of(proc: Process, tags: list[str]) -> set[str]:
    """The pids of the workers that answered the tagged probes (once their lines are logged)."""
    async def logged() -> set[str] | None:
        found = {tag: pid for pid, tag in ACCESS.findall(proc.log)}
        return {found[tag] for tag in tags} if all(tag in found for tag in tags) else None
    return await poll(logged, timeout=10)


class ExpiredInRedis:
    """Swaps a session's Redis entry for an expired copy of itself while in the ``with`` block."""

    def __init__(self, redis: aioredis.Redis, prefix: str, session_id: str) -> None:
        self.redis = redis
        self.group = group(session_id)
        self.key = prefix + self.group
        self.real: bytes | None = None

    async def __aenter__(self) -> None:
        self.real = await self.redis.hget(self.key, "s")
        assert self.real is not None
        entry = SIGNER.open(self.group, self.real)
        assert entry is not None
        expired = {**json.loads(entry), "e": time.time() - 60}
        await self.redis.hset(self.key, "s", SIGNER.seal(self.group, json.dumps(expired).encode()))

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.real is not None
        await self.redis.hset(self.key, "s", self.real)


async def held_by_both_workers(proc: Process, client: Client, redis: aioredis.Redis, prefix: str,
                               session_id: str) -> None:
    """Probe until each of the two workers has shown that it answers the session from its own copy."""
    holders: set[str] = set()

    async def both() -> bool:
        for _ in range(4):  # let the workers read the real entry and keep it
            assert (await tagged_probe(client, session_id))[1].status == 404
        near = []
        async with ExpiredInRedis(redis, prefix, session_id):
            for _ in range(6):
                tag, resp = await tagged_probe(client, session_id)
                if resp.status == 404:
                    near.append(tag)
                else:
                    assert_error(resp, 401, "session-id-expired")  # this worker read Redis
        holders.update(await workers_of(proc, near) if near else set())
        return len(holders) == 2
    await poll(both, timeout=30, interval=0)


async def log_out_then_probe_both_workers(proc: Process, client: Client, session_id: str) -> None:
    """Log out, then at once probe over new connections until both workers answered: all 401."""
    resp = await client.post("/v1/auth/logout", headers=bearer(session_id))
    assert (resp.status, resp.body) == (200, b"")
    # sent together, each over a new connection: the kernel spreads them over both workers
    burst = await asyncio.gather(*(tagged_probe(client, session_id) for _ in range(20)))
    tags = []
    for tag, resp in burst:
        assert_error(resp, 401, "invalid-session-id")
        tags.append(tag)

    async def both_refused() -> bool:
        tag, resp = await tagged_probe(client, session_id)
        assert_error(resp, 401, "invalid-session-id")
        tags.append(tag)
        return len(await workers_of(proc, tags)) == 2
    await poll(both_refused, timeout=20, interval=0)


async def test_a_logout_ends_a_session_held_near_in_every_worker_at_once(
        env: dict[str, str], tmp_path: Path, redis_keys: aioredis.Redis) -> None:
    settings = {**env, "WORKERS": "2", "CACHE_TYPE": "redis", "MESSENGER_APPS": "messenger_auth",
                "ACCESS_LOG": "1", "LOG_LEVEL": "INFO"}
    proc, client = await start_api(settings, tmp_path / "api.log")
    try:
        await register(client, "vasya")
        for _ in range(5):  # several rounds: a race would not show every time
            session_id = await login(client, "vasya")
            await held_by_both_workers(proc, client, redis_keys, env["CACHE_PREFIX"], session_id)
            await log_out_then_probe_both_workers(proc, client, session_id)
        assert "near cache" not in proc.log  # the subscriptions were never lost
    finally:
        assert proc.stop() == 0


async def test_a_hot_session_is_answered_from_the_process(env: dict[str, str], redis_keys: aioredis.Redis) -> None:
    async with serve_app({**env, "CACHE_TYPE": "redis"}, plugins=AUTH_ONLY) as srv:
        session_id = await new_session(srv.client, "vasya")
        await poll(lambda: held(srv, session_id))
        async with ExpiredInRedis(redis_keys, env["CACHE_PREFIX"], session_id):
            assert await authenticated(srv.client, session_id)  # Redis was not asked
        resp = await srv.client.post("/v1/auth/logout", headers=bearer(session_id))
        assert resp.status == 200
        assert srv.runtime.near.get(group(session_id)) is None
        assert_error(await probe(srv.client, bearer(session_id)), 401, "invalid-session-id")
        assert not await redis_keys.exists(env["CACHE_PREFIX"] + group(session_id))


async def held(srv: AppServer, session_id: str) -> bool:
    """Use the session once; whether the server now holds it in its near cache."""
    assert await authenticated(srv.client, session_id)
    return srv.runtime.near.get(group(session_id)) is not None


async def refused_everywhere(servers: tuple[AppServer, ...], session_id: str) -> None:
    """Ten probes on each server, every one 401 invalid-session-id."""
    for srv in servers:
        for _ in range(10):
            assert_error(await probe(srv.client, bearer(session_id)), 401, "invalid-session-id")


@asynccontextmanager
async def two_servers_one_behind_a_proxy(env: dict[str, str]) -> AsyncIterator[tuple[AppServer, AppServer, TcpProxy]]:
    """Two processes sharing the Redis cache; the second reaches Redis through a proxy the test can cut."""
    proxy = TcpProxy(6379)
    settings = {**env, "CACHE_TYPE": "redis"}
    try:
        async with serve_app(settings, plugins=AUTH_ONLY) as direct, \
                serve_app({**settings, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}, plugins=AUTH_ONLY) as cut:
            yield direct, cut, proxy
    finally:
        proxy.close()


async def test_a_process_cut_off_from_redis_does_not_trust_its_copy(env: dict[str, str]) -> None:
    """A logout while another process's link to Redis is cut: that process missed the eviction."""
    async with two_servers_one_behind_a_proxy(env) as (first, cut, proxy):
        ended = await new_session(first.client, "vasya")
        kept = await login(first.client, "vasya")
        for session_id in (ended, kept):
            await poll(lambda session_id=session_id: held(cut, session_id))
            await poll(lambda session_id=session_id: held(first, session_id))
        proxy.cut()
        resp = await first.client.post("/v1/auth/logout", headers=bearer(ended))
        assert (resp.status, resp.body) == (200, b"")
        await refused_everywhere((first, cut), ended)
        assert await authenticated(cut.client, kept)  # from the table while Redis is away
        proxy.restore()

        async def live() -> bool:
            return cut.runtime.near.live
        await poll(live, timeout=10)
        await refused_everywhere((first, cut), ended)
        assert await authenticated(cut.client, kept) and await authenticated(first.client, kept)


async def test_a_logout_in_a_process_cut_off_from_redis_drops_every_near_copy(env: dict[str, str]) -> None:
    """The logging-out process cannot reach Redis (nor the other's near copy through it): it ends the row
    and bumps the sessions epoch, whose notification over PostgreSQL makes the other process drop its
    copy at once (test_auth_integrity.py has the details); still refused once Redis is back."""
    async with two_servers_one_behind_a_proxy(env) as (other, cut, proxy):
        session_id = await new_session(other.client, "vasya")
        await poll(lambda: held(other, session_id))
        await poll(lambda: held(cut, session_id))
        proxy.cut()
        resp = await cut.client.post("/v1/auth/logout", headers=bearer(session_id))
        assert (resp.status, resp.body) == (200, b"")
        await refused_everywhere((other, cut), session_id)
        proxy.restore()

        async def live() -> bool:
            return cut.runtime.near.live
        await poll(live, timeout=10)
        await refused_everywhere((other, cut), session_id)
