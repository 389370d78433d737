"""The near cache against the real Redis: coherence, races, lost and stalled subscriptions, outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from messenger_core.cache import MemoryCache, RedisCache, make_cache, redis_client
from messenger_core.near import NearCache, make_near_cache
from messenger_core.settings import Config, load_core
from support import RUN_ID, TcpProxy, poll

HEARTBEAT = 0.25


def _config(prefix: str, port: int = 6379, **extra: str) -> Config:
    return Config(load_core({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "CACHE_TYPE": "redis",
                             "CACHE_PREFIX": prefix, **extra}))


class NearCacheMaker:
    """Near caches of one key prefix, as separate processes would have them (each its own client)."""

    def __init__(self, stack: AsyncExitStack, prefix: str) -> None:
        self.stack = stack
        self.prefix = prefix
        self.made: list[NearCache] = []

    async def __call__(self, port: int = 6379, max_items: int = 100, ttl: float = 60) -> NearCache:
        config = _config(self.prefix, port)
        client = redis_client(config)
        cache = RedisCache(client, self.prefix, 30, owns_client=False)
        near = NearCache(cache, client, self.prefix + "evictions", max_items, ttl, heartbeat=HEARTBEAT)
        self.stack.push_async_callback(client.aclose)
        self.stack.push_async_callback(near.close)
        self.made.append(near)
        near.start()
        return near


@pytest.fixture
async def make_near() -> AsyncIterator[NearCacheMaker]:
    prefix = f"mt-near-{RUN_ID}-{uuid.uuid4().hex[:6]}:"
    async with AsyncExitStack() as stack:
        maker = NearCacheMaker(stack, prefix)
        yield maker
        direct = redis_client(_config(prefix))
        keys = [key async for key in direct.scan_iter(match=prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()


async def until_live(*nears: NearCache, timeout: float = 10) -> None:
    async def live() -> bool:
        return all(near.live for near in nears)
    await poll(live, timeout)


@asynccontextmanager
async def holding_behind_a_proxy(make_near: NearCacheMaker) -> AsyncIterator[tuple[NearCache, TcpProxy]]:
    """A live near cache whose Redis link goes through a proxy the test can cut, holding ``g`` = ``v``."""
    proxy = TcpProxy(6379)
    try:
        near = await make_near(port=proxy.port)
        await until_live(near)
        with near.reading("g") as read:
            assert read.keep(b"v", 30)
        yield near, proxy
    finally:
        proxy.close()


async def test_a_value_kept_near_is_served_until_another_process_evicts_it(make_near: NearCacheMaker) -> None:
    first, second = await make_near(), await make_near()
    await until_live(first, second)
    with first.reading("g") as read:
        assert read.keep(b"v", 30)
    assert first.get("g") == b"v"
    assert second.get("g") is None  # each process has its own copy

    assert await second.evict("g") is True

    async def gone() -> bool:
        return first.get("g") is None
    await poll(gone, timeout=5, interval=0.01)
    with first.reading("g") as read:  # a read begun after the eviction may keep what it reads
        assert read.keep(b"v2", 30)
    assert first.get("g") == b"v2"


async def test_evict_invalidates_the_shared_group_too(make_near: NearCacheMaker) -> None:
    near = await make_near()
    await until_live(near)
    cache = near.cache
    await cache.group_set("g", "f", b"shared", await cache.group_token("g"))
    assert await cache.group_get("g", "f") == b"shared"
    assert await near.evict("g") is True
    assert await cache.group_get("g", "f") is None


async def test_a_read_raced_by_an_eviction_is_not_kept(make_near: NearCacheMaker) -> None:
    first, second = await make_near(), await make_near()
    await until_live(first, second)
    with first.reading("g") as read, first.reading("other") as unrelated:
        await second.evict("g")  # arrives while the read is in flight

        async def marked() -> bool:
            return read.stale
        await poll(marked, timeout=5, interval=0.01)
        assert not read.keep(b"old", 30)
        assert unrelated.keep(b"fine", 30)  # an eviction of another group does not matter
    assert first.get("g") is None
    assert first.get("other") == b"fine"


async def test_a_lost_subscription_drops_the_copy_and_nothing_is_trusted_until_it_is_back(
        make_near: NearCacheMaker) -> None:
    async with holding_behind_a_proxy(make_near) as (near, proxy):
        with near.reading("h") as begun:
            proxy.cut()

            async def lost() -> bool:
                return not near.live and len(near) == 0
            await poll(lost, timeout=5, interval=0.01)
            assert near.get("g") is None
            with near.reading("g") as read:
                assert not read.keep(b"v", 30)  # not live: nothing may be kept

            proxy.restore()
            await until_live(near)
            assert near.get("g") is None  # the copy was dropped, not restored
            assert not begun.keep(b"old", 30)  # begun before the loss: it may have missed an eviction
        with near.reading("g") as read:
            assert read.keep(b"v", 30)
        assert near.get("g") == b"v"


async def test_a_silent_partition_stops_the_trust_within_two_heartbeats(make_near: NearCacheMaker) -> None:
    async with holding_behind_a_proxy(make_near) as (near, proxy):
        proxy.stall()  # no reset, no FIN: only the heartbeat can tell

        async def distrusted() -> bool:
            return near.get("g") is None
        await poll(distrusted, timeout=3 * HEARTBEAT + 0.5, interval=0.01)

        async def dropped() -> bool:
            return len(near) == 0
        await poll(dropped, timeout=5, interval=0.01)
        proxy.restore()
        await until_live(near)
        assert near.get("g") is None


async def test_an_eviction_that_could_not_reach_redis_is_redone_when_it_is_back(
        make_near: NearCacheMaker) -> None:
    proxy = TcpProxy(6379)
    try:
        cut_off, other = await make_near(port=proxy.port), await make_near()
        await until_live(cut_off, other)
        cache = other.cache
        await cache.group_set("g", "f", b"active", await cache.group_token("g"))
        with other.reading("g") as read:
            assert read.keep(b"active", 30)
        with cut_off.reading("g") as read:
            assert read.keep(b"active", 30)
        proxy.cut()
        assert await cut_off.evict("g") is False  # e.g. a logout while this process cannot reach Redis
        assert cut_off.get("g") is None
        assert await cache.group_get("g", "f") == b"active"  # the gap: others still see it

        proxy.restore()

        async def redone() -> bool:
            return other.get("g") is None and await cache.group_get("g", "f") is None
        await poll(redone, timeout=10)
        await until_live(cut_off)
    finally:
        proxy.close()


async def test_the_copy_is_bounded_and_expires(make_near: NearCacheMaker) -> None:
    near = await make_near(max_items=2, ttl=0.2)
    await until_live(near)
    for key in ("a", "b", "c"):
        with near.reading(key) as read:
            assert read.keep(key, 30)
    assert near.get("a") is None  # least recently used, gone
    assert near.get("b") == "b" and near.get("c") == "c"
    with near.reading("short") as read:
        assert not read.keep("x", 0)  # nothing left of its life

    async def expired() -> bool:
        return near.get("b") is None  # NEAR_CACHE_TTL bounds every entry
    await poll(expired, timeout=5, interval=0.02)


async def test_close_stops_the_subscription(make_near: NearCacheMaker) -> None:
    near = await make_near()
    await until_live(near)
    with near.reading("g") as read:
        assert read.keep(b"v", 30)
    await near.close()
    assert not near.live and near.get("g") is None
    assert await near.evict("g") is True  # evicting needs no subscription


async def test_only_a_redis_cache_gets_a_near_layer() -> None:
    redis_config = _config("mt-near-make:")
    client = redis_client(redis_config)
    try:
        near = make_near_cache(redis_config, make_cache(redis_config, client=client), client)
        assert isinstance(near, NearCache) and near.channel == "mt-near-make:evictions"
        off = _config("mt-near-make:", NEAR_CACHE_MAX_ITEMS="0")
        assert make_near_cache(off, make_cache(off, client=client), client) is None
        one = _config("mt-near-make:", REDIS_POOL_SIZE="1")
        assert make_near_cache(one, make_cache(one, client=client), client) is None
        memory = Config(load_core({}))
        assert make_near_cache(memory, MemoryCache(10, 10, shared=True), None) is None
    finally:
        await client.aclose()
