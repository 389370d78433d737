"""A real nginx with the repository's ``deploy/nginx/nginx.conf`` in front of the app (NGINX_THROTTLING=1)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from messenger_throttle.limiter import WINDOW

from support import Client, Process, Response, free_port, poll, start_api
from throttle_support import LIMITED, RATE_HEADERS, assert_limited, burst, statuses

NGINX_DIR = Path(__file__).resolve().parent.parent / "deploy" / "nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RATE = 100  # limit_req rate in deploy/nginx/nginx.conf (r/s)
NGINX_BURST = 100  # its burst
APP_ACCESS = re.compile(r"messenger\.access: (\d{3}) GET /ping\?via=nginx ")

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (make system-deps)")


class Nginx:
    """The repository's nginx.conf, copied unchanged into a temp prefix next to the test's own
    ``upstream.conf`` and ``listen.conf``; pid, temp files and logs stay in that prefix."""

    def __init__(self, prefix: Path, upstream_port: int) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.conf = prefix / "nginx.conf"
        shutil.copyfile(NGINX_DIR / "nginx.conf", self.conf)
        (prefix / "upstream.conf").write_text(f"server 127.0.0.1:{upstream_port};\n")
        (prefix / "listen.conf").write_text(f"listen 127.0.0.1:{self.port};\n")
        self.client = Client(f"http://127.0.0.1:{self.port}")
        self.process: Process | None = None

    def command(self, *extra: str) -> list[str]:
        """nginx with this prefix and config; the pid file in the prefix, early errors to stderr."""
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e", "stderr",
                "-g", f"pid {self.prefix / 'nginx.pid'};{' daemon off;' if not extra else ''}", *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)

    async def start(self) -> None:
        """Run nginx in the foreground (its access and error logs go to ``nginx.log``)."""
        self.process = Process(self.command(), {}, self.prefix / "nginx.log")

        async def up() -> bool:
            assert self.process is not None and self.process.alive(), self.log
            try:
                await self.client.get("/nginx-is-up", timeout=2)
                return True
            except ConnectionError:
                return False
        await poll(up, timeout=10)

    @property
    def log(self) -> str:
        """nginx's access and error log so far."""
        return self.process.log if self.process is not None else ""

    def stop(self) -> None:
        """Stop nginx (SIGTERM: fast shutdown)."""
        if self.process is not None:
            self.process.stop()


@asynccontextmanager
async def behind_nginx(env: dict[str, str], tmp_path: Path, **settings: str) -> AsyncIterator[tuple[Process, Nginx]]:
    """``messenger-api`` behind the repository's nginx: the throttle plugin unless ``settings`` name others."""
    app_env = {**env, "TRUSTED_PROXIES": "127.0.0.1", "MESSENGER_APPS": "messenger_throttle",
               "LOG_LEVEL": "INFO", "ACCESS_LOG": "1", **settings}
    app, app_client = await start_api(app_env, tmp_path / "api.log")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    nginx = Nginx(prefix, int(app_client.base_url.rsplit(":", 1)[1]))
    try:
        await nginx.start()
        yield app, nginx
    finally:
        nginx.stop()
        app.stop()


def test_repository_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = Nginx(tmp_path, free_port())
    assert (tmp_path / "nginx.conf").read_bytes() == (NGINX_DIR / "nginx.conf").read_bytes()
    result = nginx.check()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


async def test_nginx_answers_429_past_the_limit_and_the_app_none(env: dict[str, str], tmp_path: Path) -> None:
    # The app would refuse the 3rd request per second if its limiter were on: NGINX_THROTTLING removes it.
    async with behind_nginx(env, tmp_path, NGINX_THROTTLING="1", THROTTLE_RPS="2") as (app, nginx):
        # Bodies: 1 MiB reaches the app (405: /ping has no POST), one byte more is nginx's 413, as JSON.
        resp = await nginx.client.post("/ping", raw=b"x" * (1024 * 1024))
        assert (resp.status, resp.json) == (405, {"message": "method-not-allowed"})
        resp = await nginx.client.post("/ping", raw=b"x" * (1024 * 1024 + 1))
        assert (resp.status, resp.json) == (413, {"message": "payload-too-large"})
        assert resp.headers["Content-Type"] == "application/json"

        responses, took = await burst(nginx.client, 2 * (NGINX_RATE + NGINX_BURST), path="/ping?via=nginx")
        counts = statuses(responses)
        assert set(counts) == {200, 429}, counts
        # Not stricter than the app's 100 per second; no more than the bucket plus what drained meanwhile.
        assert NGINX_RATE <= counts[200] <= NGINX_BURST + 1 + NGINX_RATE * (took + 0.2), (counts, took)
        for resp in responses:
            if resp.status == 429:
                assert resp.json == LIMITED
                assert resp.headers["Content-Type"] == "application/json"
                assert resp.headers["Retry-After"] == "1"
            else:
                assert not any(name in resp.headers for name in RATE_HEADERS)  # no in-app limiter

        async def app_logged() -> list[str] | None:
            seen = APP_ACCESS.findall(app.log)
            return seen if len(seen) >= counts[200] else None
        app_statuses = await poll(app_logged, timeout=5)
        assert app_statuses == ["200"] * counts[200], "the app answered something else than 200"

        async def refusals_logged() -> bool:
            return nginx.log.count("limit=REJECTED") >= counts[429]
        await poll(refusals_logged, timeout=5)

        # The app gone: nginx's 502 is JSON too.
        assert app.stop() == 0
        resp = await poll(lambda: _not_limited(nginx.client), timeout=3)
        assert (resp.status, resp.json) == (502, {"message": "service-unavailable"})
        assert resp.headers["Content-Type"] == "application/json"


async def test_through_nginx_the_client_cannot_choose_its_ip(env: dict[str, str], tmp_path: Path) -> None:
    # In-app limiter on: it keys on X-Real-IP, which nginx sets from the socket, whatever the client sends.
    async with behind_nginx(env, tmp_path, THROTTLE_RPS="3") as (_, nginx):
        # the start-up probes leave the window (a poll for that would itself count, and on a loaded
        # machine never see it empty)
        await asyncio.sleep(WINDOW + 0.1)
        spoofed = [{"X-Real-IP": f"10.3.0.{i}", "X-Forwarded-For": f"10.4.0.{i}"} for i in range(5)]
        responses = [await nginx.client.get("/ping?via=nginx", headers=headers) for headers in spoofed]
        assert [r.status for r in responses] == [200] * 3 + [429] * 2
        assert_limited(responses[-1], 3)  # the app's 429 (it carries the app's rate headers)


async def _not_limited(client: Client) -> Response | None:
    resp = await client.get("/ping")
    return resp if resp.status != 429 else None
