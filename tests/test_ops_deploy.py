"""Monitoring in deploy/: the compose profile, Prometheus' scrape configuration, the Grafana dashboard
(every metric it plots is one the app really exports), and nginx passing its ``$request_id``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from chats_support import join, new_chat, say
from deploy_support import REPO
from events_support import Stream
from search_support import search_server, start_search, wait_status
from support import poll
from test_throttle_nginx import NGINX, behind_nginx

COMPOSE = shutil.which("docker-compose")
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "messenger.json"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\b(messenger_[a-z0-9_]+)")
CLIENT_ID = "chosen-by-the-client-7"


def panels() -> list[dict[str, Any]]:
    return [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"]


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is missing: `make system-deps` installs it")
def test_the_monitoring_profile_is_valid_and_wired() -> None:
    result = subprocess.run([str(COMPOSE), "-f", "docker-compose.yml", "--profile", "monitoring", "config"],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    # docker-compose v1 resolves short volume and port entries to "source:target:mode" strings
    mounts = dict(volume.split(":")[:2] for name in ("prometheus", "grafana") for volume in services[name]["volumes"])
    assert mounts[str(PROMETHEUS)] == "/etc/prometheus/prometheus.yml"
    assert mounts[str(DASHBOARD.parent)] == "/var/lib/grafana/dashboards"
    assert mounts[str(REPO / "deploy" / "grafana" / "provisioning")] == "/etc/grafana/provisioning"
    # Grafana on the host's loopback only; Prometheus not published at all
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000/tcp"]
    assert not services["prometheus"].get("ports")


def test_prometheus_scrapes_the_api_and_the_consumer_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"messenger-api", "messenger-consumer"}
    ports = {name: job["dns_sd_configs"][0]["port"] for name, job in jobs.items()}
    env = dict(line.split("=", 1) for line in (REPO / "deploy" / ".env.prod").read_text().splitlines()
               if line and not line.startswith("#"))
    assert ports == {"messenger-api": int(env["PORT"]), "messenger-consumer": int(env["METRICS_PORT"])}
    assert {job["metrics_path"] for job in jobs.values()} == {"/metrics"}


async def test_the_dashboard_plots_only_metrics_the_app_exports(env: dict[str, str]) -> None:
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    plotted = set()
    titles = [panel["title"] for panel in panels()]
    assert len(titles) == len(set(titles))
    for panel in panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            plotted |= set(METRIC.findall(target["expr"]))
    # requests, latency, errors and saturation at a glance
    assert {"messenger_http_requests_total", "messenger_http_request_duration_seconds_bucket",
            "messenger_db_pool_connections_in_use", "messenger_db_pool_requests_waiting"} <= plotted

    async with search_server(env) as srv:  # traffic that makes every kind of metric appear
        chat = await new_chat(srv.client)
        user = await join(srv.client, chat)
        await say(srv.client, chat, user, "a plotted tapir")
        await srv.client.get(f"/v1/chats/{chat}/messages?limit=5")
        await wait_status(srv.client, await start_search(srv.client, "tapir", user), user_id=user)
        text = (await srv.client.get("/metrics")).body.decode()
    exported = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    assert plotted <= exported, sorted(plotted - exported)


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (make system-deps)")
async def test_nginx_passes_its_request_id_and_hides_metrics(env: dict[str, str], tmp_path: Path) -> None:
    apps = "messenger_throttle,messenger_chats,messenger_events"
    async with behind_nginx(env, tmp_path, MESSENGER_APPS=apps) as (app, nginx):
        resp = await nginx.client.get("/ping?via=nginx")
        assert resp.status == 200
        rids = [resp.headers["X-Request-Id"]]
        # every location that proxies sets nginx's id: an id the client sends (trusted from nginx by the
        # app) must not get through, on the long-poll location and the stream's either
        chat = await new_chat(nginx.client)
        resp = await nginx.client.get(f"/v1/chats/{chat}/messages?limit=5", headers={"X-Request-Id": CLIENT_ID})
        assert resp.status == 200, resp
        rids.append(resp.headers["X-Request-Id"])
        stream = await Stream.open(nginx.client.base_url, headers={"X-Request-Id": CLIENT_ID})
        try:
            await stream.ready()
            rids.append(stream.conn.headers["X-Request-Id"])
        finally:
            stream.close()
        for rid in rids:
            assert re.fullmatch(r"[0-9a-f]{32}", rid), rid

        async def logged() -> bool:  # both access lines are written just after the response is sent
            return all(f"rid={rid}" in nginx.log and f"request_id={rid}" in app.log  # nginx's id, kept by the app
                       for rid in rids)
        await poll(logged, timeout=5)
        assert CLIENT_ID not in app.log
        resp = await nginx.client.get("/metrics")
        assert resp.status == 404 and resp.json == {"message": "not-found"}


def test_every_proxied_location_sets_the_request_id() -> None:
    # nginx inherits proxy_set_header only into a location that sets none itself: each one names it
    conf = (REPO / "deploy" / "nginx" / "nginx.conf").read_text()
    locations = re.findall(r"\n        location [^{]*\{(.*?)\n        \}", conf, re.S)
    proxied = [body for body in locations if "proxy_pass" in body]
    assert len(proxied) == 3
    for body in proxied:
        assert "proxy_set_header X-Request-Id $request_id;" in body, body
