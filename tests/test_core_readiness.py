"""``/ping_db`` is a readiness probe: while PostgreSQL is silent (packets dropped, not refused) it answers
503 at once, never queued behind the pool nor behind a probe that is still waiting for an answer."""

from __future__ import annotations

import asyncio

from support import TcpProxy, assert_error, poll, serve_app


async def test_ping_db_answers_503_while_postgres_is_stalled_before_a_request_waiting_on_the_pool(
        env: dict[str, str]) -> None:
    proxy = TcpProxy(5432)
    settings = {**env, "POSTGRES_HOSTS": f"127.0.0.1:{proxy.port}", "POOL_SIZE": "1", "DB_TIMEOUT": "6",
                "AUTH_DISABLED": "1"}
    try:
        async with serve_app(settings, plugins=("messenger_chats",)) as srv:
            assert (await srv.client.get("/ping_db")).status == 200
            pool = srv.runtime.db.pool
            held = await pool.getconn()  # the pool's only connection, held
            try:
                proxy.stall()  # a silent partition: the probe's own connection gets no answer
                # this request waits for the pool until DB_TIMEOUT (then 503): the yardstick
                waiting = asyncio.ensure_future(srv.client.post("/v1/chats", {"chat_name": "w"}, timeout=30))

                async def queued() -> bool:  # the request waits for the pool now
                    return pool.get_stats()["requests_waiting"] >= 1
                await poll(queued, timeout=10)
                for _ in range(3):  # a stuck probe is not waited for again and again
                    answers = await asyncio.gather(*(srv.client.get("/ping_db", timeout=30) for _ in range(5)))
                    for resp in answers:
                        assert_error(resp, 503, "database-unavailable")
                    assert not waiting.done(), "/ping_db answered only after the pool gave up"
                assert_error(await waiting, 503, "database-unavailable")
            finally:
                await pool.putconn(held)
            proxy.restore()

            async def ready() -> bool:
                return (await srv.client.get("/ping_db", timeout=30)).status == 200
            await poll(ready, timeout=20)
            assert (await srv.client.post("/v1/chats", {"chat_name": "after"})).status == 201
    finally:
        proxy.close()
