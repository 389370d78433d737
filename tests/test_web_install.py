"""``pip install`` / ``pip uninstall`` of messenger-web in a fresh virtual environment.

With the plugin ``GET /`` is the chat app; without it the API answers ``/`` as any unknown path again
(401 with auth on), and nothing else changed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import Client, Process, free_port, poll

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 600


def pip(venv: Path, *args: str) -> None:
    """Run the fresh venv's pip (packages come from the usual index or pip's cache)."""
    subprocess.run([str(venv / "bin" / "pip"), *args], check=True, timeout=PIP_TIMEOUT, capture_output=True)


async def serve(venv: Path, env: dict[str, str], log: Path) -> tuple[Process, Client]:
    """The fresh venv's ``messenger-api`` (entry points: whatever is installed there) on a free port."""
    port = free_port()
    proc = Process([str(venv / "bin" / "messenger-api")], {**env, "PORT": str(port), "AUTH_SCRYPT_N": "1024"}, log)
    client = Client(f"http://127.0.0.1:{port}")

    async def up() -> bool:
        assert proc.alive(), proc.log
        try:
            return (await client.get("/ping_db", timeout=2)).status == 200
        except ConnectionError:
            return False
    await poll(up, timeout=60)
    return proc, client


@pytest.mark.timeout(2 * PIP_TIMEOUT)
async def test_uninstalling_messenger_web_gives_the_api_its_root_back(env: dict[str, str], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip(venv, "install", "-q", "-e", str(ROOT), "-e", str(ROOT / "plugins" / "messenger_auth"),
        "-e", str(ROOT / "plugins" / "messenger_web"))
    proc, client = await serve(venv, env, tmp_path / "with.log")
    try:
        page = await client.get("/")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        asset = re.search(r'src="(/web/[0-9a-f]{16}/app\.js)"', page.body.decode())
        assert asset is not None
        assert (await client.get(asset.group(1))).status == 200
        assert (await client.get("/v1/auth-probe")).status == 401
    finally:
        assert proc.stop() == 0

    pip(venv, "uninstall", "-y", "messenger-web")
    proc, client = await serve(venv, env, tmp_path / "without.log")
    try:
        for path in ("/", asset.group(1)):
            resp = await client.get(path)
            assert (resp.status, resp.json) == (401, {"message": "auth-failed"}), path
        listed = subprocess.run([str(venv / "bin" / "messenger-api"), "plugins"], capture_output=True, text=True,
                                check=True, timeout=60, env={"PATH": str(venv / "bin")}).stdout
        assert "messenger_auth" in listed and "messenger_web" not in listed, listed
    finally:
        assert proc.stop() == 0
