"""The compose stack, hardened: Redis needs a password and bounds its memory, nginx has a fixed address
that alone is trusted as a proxy, the app containers are limited, read-only and cannot gain privileges."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def env_file() -> dict[str, str]:
    """deploy/.env.prod as a dict."""
    pairs = {}
    for line in (REPO / "deploy" / ".env.prod").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_redis_requires_the_password_of_redis_url_and_bounds_its_memory(services: dict[str, Any]) -> None:
    env = env_file()
    password = urlsplit(env["REDIS_URL"]).password
    assert password and password == env["REDIS_PASSWORD"] and password.startswith("change-me")
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "$$REDIS_PASSWORD" in command
    assert "--maxmemory " in command and "--maxmemory-policy volatile-lru" in command
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])


def test_only_nginx_fixed_address_is_trusted(services: dict[str, Any]) -> None:
    env = env_file()
    address = services["nginx"]["networks"]["default"]["ipv4_address"]
    assert env["TRUSTED_PROXIES"] == address
    subnet = yaml.safe_load((REPO / "docker-compose.yml").read_text())["networks"]["default"]["ipam"]["config"][0]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet["subnet"])


@pytest.mark.parametrize("name", ["api", "consumer"])
def test_app_containers_are_limited_read_only_and_unprivileged(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["read_only"] is True
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["mem_limit"] and float(service["cpus"]) > 0
    assert any(mount.startswith("/tmp") for mount in service["tmpfs"])  # metrics files, temp files
