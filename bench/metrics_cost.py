"""What the metrics cost: the per-request and per-look-up calls, and one scrape, in each value mode.

``python -m bench.metrics_cost`` runs itself once per mode in a fresh interpreter (prometheus-client
chooses how values are kept when it is first imported): ``memory`` (one process: messenger-consumer,
an in-process test server) and ``multiprocess`` (messenger-api: values in mmapped files of the
instance's directory).  It prints microseconds per call and the time of one render of /metrics over
the files of ``--workers`` workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

CALLS = 200_000


def per_call(func: Any, calls: int = CALLS) -> float:
    """Microseconds per call of ``func()`` (the best of three runs)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            func()
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / calls


def measure(workers: int) -> dict[str, float]:
    """Run in the child: time the calls the app makes (after its mode was chosen)."""
    # pylint: disable=import-outside-toplevel
    from messenger_core import instruments, metrics
    requests, latency = instruments.HTTP_REQUESTS, instruments.HTTP_LATENCY

    def one_request() -> None:  # what MessengerApp.log_request adds to every request
        route = "/v1/chats/{chat_id}/messages"
        requests.labels(instruments.method_label("GET"), route, "200").inc()
        latency.labels(route).observe(0.0021)

    def one_lookup() -> None:  # what every cache get adds
        instruments.cache_lookup("redis", "chats:0123456789abcdef0123456789abcdef:tail", True)

    result = {"request_us": per_call(one_request), "cache_lookup_us": per_call(one_lookup)}
    if metrics.directory() is not None:
        for _ in range(workers - 1):  # the other workers' files: fork, write, exit
            pid = os.fork()
            if pid == 0:
                one_request()
                one_lookup()
                os._exit(0)  # pylint: disable=protected-access
            os.waitpid(pid, 0)
    started = time.perf_counter()
    body, _ = metrics.render()
    result["render_ms"] = 1000.0 * (time.perf_counter() - started)
    result["render_bytes"] = float(len(body))
    return result


def main() -> None:
    """Each mode in its own interpreter; a Markdown table on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", choices=("memory", "multiprocess"))
    args = parser.parse_args()
    if args.child:
        if args.child == "multiprocess":
            from messenger_core import metrics  # pylint: disable=import-outside-toplevel
            metrics.use_directory(tempfile.mkdtemp(prefix="bench-metrics-"))
        print(json.dumps(measure(args.workers)))
        return
    print("| mode | per request (counter + histogram) | per cache look-up | one /metrics render | its size |")
    print("|---|---|---|---|---|")
    for mode in ("memory", "multiprocess"):
        out = subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child", mode,
                              "--workers", str(args.workers)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"| {mode} | {r['request_us']:.2f} us | {r['cache_lookup_us']:.2f} us | "
              f"{r['render_ms']:.1f} ms | {r['render_bytes'] / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()
