"""Worker memory under the page-size attack: 8 clients read pages of heavy messages for 10 s.

``python -m bench.page_memory [--seconds 10] [--clients 8] [--messages 40]`` starts ``messenger-api``
(one worker, chats only, auth off) on a new database, posts ``--messages`` messages of 65,536 control
characters (each 393 KB of JSON, almost nothing in PostgreSQL), then has ``--clients`` threads read
``limit=1000`` pages of that chat (following ``next.iterator``, then from the start again) while the
worker's resident memory (VmRSS) is sampled every 0.1 s.  Prints the RSS before, the peak, the page
sizes seen and the pages read.  Without PAGE_MAX_BYTES one such page was all 40 messages (15.7 MB).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from bench.stack import Process, free_port, http, rss_mb, wait_http

HEAVY = "\x01" * 65536


def read_pages(base: str, chat: str, until: float, sizes: list[int]) -> None:
    """One client: page through the chat with limit=1000 until ``until``."""
    start = None
    while time.monotonic() < until:
        query = "limit=1000" + (f"&from={start}" if start else "")
        with urllib.request.urlopen(f"{base}/v1/chats/{chat}/messages?{query}", timeout=30) as resp:
            raw = resp.read()
        sizes.append(len(raw))
        body = json.loads(raw)
        start = body["next"]["iterator"] if body["messages"] else None


def main() -> None:
    """Run the measurement and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()
    database = f"bench_pages_{free_port()}"
    port = free_port()
    env = {"POSTGRES_HOSTS": "127.0.0.1", "POSTGRES_DB": database, "WORKERS": "1", "PORT": str(port),
           "HOST": "127.0.0.1", "MESSENGER_APPS": "messenger_chats", "AUTH_DISABLED": "1", "LOG_LEVEL": "WARNING",
           "ACCESS_LOG": "0"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as logs:
        api = Process("api", ["messenger-api"], env, Path(logs))
        try:
            wait_http(api, base + "/ping_db", streak=3)
            chat = http("POST", base + "/v1/chats", {"chat_name": "heavy"})[1]["chat_id"]
            user = http("POST", f"{base}/v1/chats/{chat}/users", {"user_name": "u"})[1]["user_id"]
            for _ in range(args.messages):
                assert http("POST", f"{base}/v1/chats/{chat}/messages?user_id={user}", {"message": HEAVY})[0] == 201
            worker = api.workers()[0]
            before = rss_mb(worker)
            sizes: list[int] = []
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=read_pages, args=(base, chat, until, sizes))
                       for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            peak = before
            while any(thread.is_alive() for thread in threads):
                peak = max(peak, rss_mb(worker))
                time.sleep(0.1)
            print(f"worker RSS before {before:.1f} MB, peak {peak:.1f} MB; {len(sizes)} pages read by "
                  f"{args.clients} clients in {args.seconds:.0f} s; largest page {max(sizes)} bytes")
        finally:
            api.stop()
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
