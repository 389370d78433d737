"""``deploy/.env.*`` are working examples: real settings only, values the app accepts, no secrets.

``.env.dev`` is also run for real: the API and the consumer from the venv, through the entrypoint,
against this machine's PostgreSQL, Redis and RabbitMQ (with this run's database, key prefix and
queue names), and a search goes through RabbitMQ and the consumer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from deploy_support import REPO, VENV_PATH, Entrypoint, missing_database, wait_ready
from support import ALL_PLUGINS, REDIS_URL, RMQ_URL, RUN_ID, Client, delete_rabbit_queue, free_port, load_plugins, poll

from messenger_core.plugins import PluginManager
from messenger_core.settings import load_core

ENV_DIR = REPO / "deploy"
#: Read by the images of docker-compose.yml and by deploy/entrypoint, not by the app.
NOT_APP_SETTINGS = {"POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "DB_WAIT_TIMEOUT",
                    "REDIS_PASSWORD"}  # read by the redis service (--requirepass)
COURSE_VARIABLES = {"POSTGRES_HOSTS", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PWD", "AUTH_DISABLED", "PORT"}
LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S*)$")


def read_env(name: str) -> dict[str, str]:
    """KEY=value lines (no quotes, no spaces: docker-compose v1 and bash read them alike)."""
    values: dict[str, str] = {}
    for number, line in enumerate((ENV_DIR / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"{name}:{number}: not a plain KEY=value line: {line!r}"
        assert match.group(1) not in values, f"{name}:{number}: {match.group(1)} set twice"
        values[match.group(1)] = match.group(2)
    return values


def app_settings(env: dict[str, str]) -> set[str]:
    """Load the whole configuration (core and every plugin) from ``env``; every variable name."""
    environ = {**env, "MESSENGER_DISABLE_PLUGIN_AUTOLOAD": "1"}
    core = load_core(environ)
    config = PluginManager(core, load_plugins(ALL_PLUGINS)).load_config(core, environ)
    sections = [config.core, *config.sections.values()]
    return {setting.env for section in sections for setting in type(section).settings()}


@pytest.mark.parametrize("name", [".env.dev", ".env.prod", ".env.test"])
def test_env_file_holds_real_settings_the_app_accepts(name: str) -> None:
    env = read_env(name)
    unknown = set(env) - app_settings(env) - NOT_APP_SETTINGS
    assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_env_test_is_the_course_container_mode() -> None:
    env = read_env(".env.test")
    assert set(env) == COURSE_VARIABLES
    assert (env["AUTH_DISABLED"], env["PORT"], env["POSTGRES_PWD"]) == ("true", "8080", "")


def test_env_prod_targets_the_compose_network_with_placeholder_passwords() -> None:
    env = read_env(".env.prod")
    assert env["POSTGRES_HOSTS"] == "postgres"
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    rmq = urlsplit(env["RMQ_URL"])
    assert rmq.hostname == "rabbitmq"
    # the images create their users from these; the app logs in with the same values
    assert env["POSTGRES_PASSWORD"] == env["POSTGRES_PWD"]
    assert (rmq.username, rmq.password) == (env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"])
    for password in (env["POSTGRES_PWD"], env["RABBITMQ_DEFAULT_PASS"]):
        assert password.startswith("change-me"), "a placeholder, obviously not a real secret"
    assert "CHANGE THE PASSWORDS" in (ENV_DIR / ".env.prod").read_text()
    assert env["CACHE_TYPE"] == "redis" and env["NGINX_THROTTLING"] == "true"


def test_env_dev_targets_the_services_on_loopback() -> None:
    env = read_env(".env.dev")
    assert env["POSTGRES_HOSTS"] == "127.0.0.1"
    assert urlsplit(env["REDIS_URL"]).hostname == "127.0.0.1"
    rmq = urlsplit(env["RMQ_URL"])
    assert (rmq.hostname, rmq.username, rmq.password) == ("127.0.0.1", "guest", "guest")
    assert env["CACHE_TYPE"] == "redis"


def test_env_files_hold_no_machine_paths() -> None:
    for path in ENV_DIR.glob(".env.*"):
        assert "/work/" not in path.read_text() and "/home/" not in path.read_text(), path


@pytest.fixture
def dev_env() -> Iterator[dict[str, str]]:
    """deploy/.env.dev with this run's database, port, key prefix and queue names."""
    with missing_database("mt_deploy_dev") as database:
        suffix = database[-6:]
        env = {
            **read_env(".env.dev"),
            "POSTGRES_DB": database,
            "PORT": str(free_port()),
            "CACHE_PREFIX": f"mt-{RUN_ID}-{suffix}:",
            "SEARCH_EXCHANGE": f"mt_{RUN_ID}_{suffix}_exchange",
            "SEARCH_QUEUE": f"mt_{RUN_ID}_{suffix}_queue",
            "SEARCH_ROUTING_KEY": f"mt_{RUN_ID}_{suffix}",
            "PATH": VENV_PATH,
        }
        assert (env["REDIS_URL"], env["RMQ_URL"]) == (REDIS_URL, RMQ_URL)  # the test machine's services
        yield env
        delete_rabbit_queue(env["SEARCH_QUEUE"], env["SEARCH_EXCHANGE"])
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=env["CACHE_PREFIX"] + "*"))
        if keys:
            client.delete(*keys)
        client.close()


async def test_env_dev_runs_api_and_consumer(dev_env: dict[str, str], tmp_path: Path) -> None:
    api = Entrypoint(dev_env, tmp_path / "api.log", "messenger-api")
    consumer: Entrypoint | None = None
    try:
        client = Client(f"http://127.0.0.1:{dev_env['PORT']}")
        await wait_ready(api, client)

        # auth is on in dev: a session, a chat with a message, and a search through RabbitMQ
        creds = {"user_name": f"dev-{RUN_ID}", "password": "dev-password"}
        assert (await client.post("/v1/auth/register", creds)).status == 201
        session = (await client.post("/v1/auth/login", creds)).json["session_id"]
        authed = client.with_headers(Authorization=f"session_id {session}")
        assert (await client.post("/v1/chats", {"chat_name": "dev"})).status == 401
        chat_id = (await authed.post("/v1/chats", {"chat_name": "dev"})).json["chat_id"]
        user_id = (await authed.post(f"/v1/chats/{chat_id}/users", {"user_name": "dev"})).json["user_id"]
        resp = await authed.post(f"/v1/chats/{chat_id}/messages?user_id={user_id}", {"message": "deployment works"})
        assert resp.status == 201, resp.body
        task_id = (await authed.post("/v1/chats/search", {"message": "deployment"})).json["task_id"]
        resp = await authed.get(f"/v1/chats/search/status/{task_id}")
        assert (resp.status, resp.json) == (200, {"status": "WAITING"})  # no consumer yet: queued in RabbitMQ

        consumer = Entrypoint(dev_env, tmp_path / "consumer.log", "messenger-consumer")
        await consumer.wait_log("consumer ready", timeout=30)
        assert "entrypoint: PostgreSQL ready" in consumer.log

        async def done() -> bool:
            resp = await authed.get(f"/v1/chats/search/status/{task_id}")
            assert resp.status == 200, resp.body
            return resp.json["status"] == "SUCCESS"
        await poll(done, 20)
        resp = await authed.get(f"/v1/chats/search/{task_id}/messages?limit=10")
        assert resp.status == 200, resp.body
        assert [m["text"] for m in resp.json["messages"]] == ["deployment works"]

        assert api.stop() == 0, api.log
        assert consumer.stop() == 0, consumer.log
    finally:
        api.kill()
        if consumer is not None:
            consumer.kill()
