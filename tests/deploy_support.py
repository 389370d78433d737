"""Helpers of the deployment tests: run ``deploy/entrypoint`` with an exact environment.

``support.Process`` adds the test runner's whole environment; the course's container sees only
the variables it was given, so these processes get exactly the ``env`` passed in (plus nothing).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg

from support import (BIN, PG_HOST, PG_USER, RUN_ID, Client, Process, admin_conninfo, drop_database, poll,
                     wait_serving)

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "deploy" / "entrypoint"
#: PATH of the course-mode processes: the venv's bin directory first, then the system.
VENV_PATH = f"{BIN}:/usr/local/bin:/usr/bin:/bin"


def course_env(database: str, port: int, **extra: str) -> dict[str, str]:
    """Only the variables the course's container gets (plus PATH with the venv first)."""
    env = {
        "POSTGRES_HOSTS": PG_HOST,
        "POSTGRES_DB": database,
        "POSTGRES_USER": PG_USER,
        "POSTGRES_PWD": "",
        "AUTH_DISABLED": "true",
        "PORT": str(port),
        "PATH": VENV_PATH,
    }
    env.update(extra)
    return env


def database_exists(name: str) -> bool:
    """True when the local server has a database of that name."""
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@contextmanager
def missing_database(prefix: str = "mt_deploy") -> Iterator[str]:
    """A unique database name that does not exist yet (the app must create it); dropped at the end."""
    name = f"{prefix}_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    assert not database_exists(name)
    try:
        yield name
    finally:
        drop_database(name)


class Entrypoint(Process):
    """``deploy/entrypoint COMMAND...`` as a subprocess with exactly ``env``, its output in a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *command: str) -> None:
        super().__init__([str(ENTRYPOINT), *command], env, log_path, inherit_env=False, cwd=log_path.parent)

    def cmdline(self) -> list[str]:
        """The argv of the process now running under the entrypoint's pid (after its exec)."""
        raw = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes()
        return [part.decode() for part in raw.split(b"\0") if part]

    async def wait_log(self, text: str, timeout: float = 15.0) -> None:
        """Poll the log until it contains ``text``."""
        async def seen() -> bool:
            return text in self.log
        await poll(seen, timeout)


async def wait_ready(proc: Entrypoint, client: Client, path: str = "/ping_db", timeout: float = 30.0) -> float:
    """Poll ``path`` until 200; seconds since the process started."""
    try:
        await wait_serving(proc, client, path, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{path} not 200 within {timeout}s; the log:\n{proc.log[-6000:]}") from exc
    return time.monotonic() - proc.started
