"""The docker-compose stack and the image, checked without a Docker engine.

``docker-compose config`` (the Debian package, compose file syntax checker) validates and resolves
the file; the resolved stack is then checked for what production relies on: health-gated start
order, named volumes where data must survive, one published port (nginx), the env file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from deploy_support import REPO

COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="the docker-compose binary is missing: `make system-deps` installs it (Debian package)")
PLUGIN_DIRS = sorted(path.parent.name for path in (REPO / "plugins").glob("*/pyproject.toml"))


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMPOSE), "-f", "docker-compose.yml", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@needs_compose
@pytest.mark.parametrize("env_file", [(), ("--env-file", "deploy/.env.prod")], ids=["plain", "env-file"])
def test_compose_file_is_valid(env_file: tuple[str, ...]) -> None:
    # plain: what CI runs; env-file: what `make run-prod` runs
    result = compose(*env_file, "config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # not even a warning (say, an unset variable)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    if COMPOSE is None:
        pytest.skip("the docker-compose binary is missing: `make system-deps` installs it (Debian package)")
    result = compose("config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    # what `up` starts without --profile (docker-compose v1's config lists profiled services too)
    resolved["services"] = {name: svc for name, svc in resolved["services"].items() if not svc.get("profiles")}
    used = {mount.split(":")[0] for svc in resolved["services"].values() for mount in svc.get("volumes", [])}
    resolved["volumes"] = {name: volume for name, volume in resolved.get("volumes", {}).items() if name in used}
    return resolved


def test_services_start_in_health_order(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {"postgres", "redis", "rabbitmq", "api", "consumer", "nginx"}
    for name in ("postgres", "redis", "rabbitmq"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "consumer"):
        assert services[name]["depends_on"] == {
            dep: {"condition": "service_healthy"} for dep in ("postgres", "redis", "rabbitmq")}, name
        assert services[name]["build"]["context"] == str(REPO)
    assert services["nginx"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_one_image_serves_api_and_consumer(stack: dict[str, Any]) -> None:
    api, consumer = stack["services"]["api"], stack["services"]["consumer"]
    assert api["image"] == consumer["image"]
    assert api["command"] == ["messenger-api"]
    assert consumer["command"] == ["messenger-consumer"]
    assert consumer["healthcheck"]["test"] == ["NONE"]  # disabled: the image's check is an HTTP one
    for service in (api, consumer):
        env = service["environment"]
        assert env["POSTGRES_HOSTS"] == "postgres"
        assert env["REDIS_URL"] == "redis://:change-me-redis-password@redis:6379/0"
        assert env["RMQ_URL"].endswith("@rabbitmq:5672/%2F")
        assert env["CACHE_TYPE"] == "redis"


def test_only_nginx_is_published_and_data_lives_in_volumes(stack: dict[str, Any]) -> None:
    services = stack["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"nginx"}
    ports = services["nginx"]["ports"]
    assert [(str(p["published"]), p["target"]) for p in ports] == [("80", 80)]
    assert set(stack["volumes"]) == {"postgres-data", "rabbitmq-data"}
    mounts = {name: svc.get("volumes", []) for name, svc in services.items()}
    assert mounts["postgres"] == ["postgres-data:/var/lib/postgresql/data:rw"]
    assert mounts["rabbitmq"] == ["rabbitmq-data:/var/lib/rabbitmq:rw"]
    assert mounts["nginx"] == [f"{REPO / 'deploy' / 'nginx'}:/etc/nginx/messenger:ro"]
    for name in ("api", "consumer", "redis"):
        assert not mounts[name], name


def test_nginx_runs_the_committed_config(stack: dict[str, Any]) -> None:
    command = stack["services"]["nginx"]["command"]
    config = command[command.index("-c") + 1]
    assert config.startswith("/etc/nginx/messenger/")
    local = REPO / "deploy" / "nginx" / config.removeprefix("/etc/nginx/messenger/")
    assert local.is_file(), local
    text = " ".join(path.read_text() for path in local.parent.glob("*.conf"))
    assert re.search(r"server\s+api:8080;", text)  # the api service of the stack
    assert re.search(r"listen\s+80;", text)


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_dockerfile_installs_the_core_and_every_plugin() -> None:
    text = dockerfile()
    assert PLUGIN_DIRS == ["messenger_auth", "messenger_chats", "messenger_events", "messenger_search",
                           "messenger_throttle", "messenger_web"]
    install = re.search(r"pip install --no-deps --no-build-isolation \.(.*?)\n\s*&&", text, re.S)
    assert install, "the line that installs our own packages"
    for name in PLUGIN_DIRS:
        # its dependency list reaches the cached layer, and the package itself is installed
        assert f"COPY plugins/{name}/pyproject.toml plugins/{name}/" in text, name
        assert f"plugins/{name}" in install.group(1), name
    assert text.index("pip install -r requirements.txt") < text.index("COPY messenger_core/")


def test_dockerfile_runs_as_a_user_with_healthcheck_and_entrypoint() -> None:
    lines = [line.strip() for line in dockerfile().splitlines()]
    assert lines[[i for i, line in enumerate(lines) if line.startswith("FROM ")][0]] == "FROM python:3.11-slim"
    user = [line for line in lines if line.startswith("USER ")]
    assert user and not user[-1].startswith(("USER root", "USER 0"))
    assert "EXPOSE 8080" in lines
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert "/ping" in dockerfile()
    assert 'ENTRYPOINT ["/app/deploy/entrypoint"]' in lines
    assert 'CMD ["messenger-api"]' in lines


def test_dockerignore_keeps_settings_and_secrets_out() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # an allow-list: nothing enters the build context unless named
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "messenger_core/", "plugins/", "deploy/entrypoint"}
    copied = set(re.findall(r"^COPY (\S+)", dockerfile(), re.M))
    for source in copied:
        assert any(source == a or source.startswith(a) for a in allowed), source


def test_entrypoint_is_executable_bash() -> None:
    entrypoint = REPO / "deploy" / "entrypoint"
    assert entrypoint.stat().st_mode & 0o111
    assert entrypoint.read_text().startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(["bash", "-n", str(entrypoint)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
