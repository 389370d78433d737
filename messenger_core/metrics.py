"""Prometheus metrics, summed over every process of an instance (prometheus-client's multiprocess mode).

A plugin declares its metrics at import time through the public surface::

    from messenger_core import metrics
    POSTS = metrics.histogram("messenger_chats_post_batch_size", "Posts per insert", buckets=(1, 2, 4, 8))
    ...
    POSTS.observe(len(batch))

The objects returned here are lazy: the prometheus-client metric behind one is made on its first
use, after :func:`use_directory` chose how values are kept.  That matters because prometheus-client
decides once, when it is first imported, whether values live in this process's memory or in files
of ``PROMETHEUS_MULTIPROC_DIR`` that every worker of the instance writes and any worker sums when
scraped.  ``messenger-api`` calls :func:`use_directory` before it forks its workers (and before
anything imports prometheus-client); a process that never calls it (``messenger-consumer``, an
in-process test server) keeps its values in memory.

Gauges default to the ``livesum`` mode: the sum over the workers alive now (a dead worker's files
are dropped by :func:`mark_dead`).  Counters and histograms keep the counts of dead workers, so a
total never goes backwards when a worker is replaced.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_state: dict[str, str | None] = {"directory": None}
_declared: dict[str, "Metric"] = {}
_lock = threading.Lock()


class Metric:
    """A counter, gauge or histogram, created in prometheus-client on first use.

    ``labels(*values)`` returns the child for those label values (children are kept, so a hot path
    pays one dict look-up); a metric declared without labels is used directly (``inc``, ``set``,
    ``observe``).
    """

    def __init__(self, kind: str, name: str, documentation: str, labelnames: Sequence[str],
                 options: dict[str, Any]) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.options = options
        self._metric: Any = None
        self._children: dict[tuple[str, ...], Any] = {}

    def _real(self) -> Any:
        if self._metric is None:
            with _lock:
                if self._metric is None:
                    import prometheus_client  # pylint: disable=import-outside-toplevel
                    factory = {"counter": prometheus_client.Counter, "gauge": prometheus_client.Gauge,
                               "histogram": prometheus_client.Histogram}[self.kind]
                    self._metric = factory(self.name, self.documentation, self.labelnames, **self.options)
        return self._metric

    def labels(self, *values: str) -> Any:
        """The child for these label values, in the declared order."""
        child = self._children.get(values)
        if child is None:
            child = self._real().labels(*values)
            self._children[values] = child
        return child

    def inc(self, amount: float = 1.0) -> None:
        """Counter or gauge without labels: add ``amount``."""
        self._real().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Gauge without labels: subtract ``amount``."""
        self._real().dec(amount)

    def set(self, value: float) -> None:
        """Gauge without labels: set it."""
        self._real().set(value)

    def observe(self, value: float) -> None:
        """Histogram without labels: count one observation."""
        self._real().observe(value)


def _declare(kind: str, name: str, documentation: str, labels: Sequence[str], **options: Any) -> Metric:
    """The metric of that name; declaring it again with the same shape returns the same object."""
    with _lock:
        known = _declared.get(name)
        if known is not None:
            if (known.kind, known.labelnames, known.options) != (kind, tuple(labels), options):
                raise ValueError(f"metric {name!r} is already declared with another type, labels or options")
            return known
        metric = Metric(kind, name, documentation, labels, options)
        _declared[name] = metric
        return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Metric:
    """A counter (exported as ``<name>_total``), summed over every worker, dead ones included."""
    return _declare("counter", name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = (), mode: str = "livesum") -> Metric:
    """A gauge; ``mode`` is prometheus-client's multiprocess mode (livesum: the sum over live workers)."""
    return _declare("gauge", name, documentation, labels, multiprocess_mode=mode)


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              buckets: Sequence[float] = LATENCY_BUCKETS) -> Metric:
    """A histogram (``_bucket``, ``_sum``, ``_count``); the default buckets suit seconds of latency."""
    return _declare("histogram", name, documentation, labels, buckets=tuple(buckets))


# ---- the directory of a multi-process instance ---------------------------------------------------

def use_directory(path: str) -> None:
    """Keep every worker's values in directory ``path``, emptied now: call once, before any metric is used.

    The directory belongs to this instance alone: files left by an earlier run are removed, or
    their counts would be added to this run's.
    """
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != path:
        raise RuntimeError("prometheus_client was imported before the metrics directory was chosen")
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        file = os.path.join(path, entry)
        if entry.endswith(".db") and os.path.isfile(file):
            os.remove(file)
    os.environ[MULTIPROC_ENV] = path  # read by prometheus-client when it is imported
    _state["directory"] = path


def directory() -> str | None:
    """The multiprocess directory in use, or None when values stay in this process."""
    return _state["directory"]


def mark_dead(pid: int) -> None:
    """A worker exited: its live gauges stop counting (its counters keep counting)."""
    path = _state["directory"]
    if path is not None:
        from prometheus_client import multiprocess  # pylint: disable=import-outside-toplevel
        multiprocess.mark_process_dead(pid, path)


def remove_directory(path: str) -> None:
    """Delete a directory this process created for its instance (at exit)."""
    shutil.rmtree(path, ignore_errors=True)


def render() -> tuple[bytes, str]:
    """Every metric in the Prometheus text format, and its content type.

    Summed over the instance's workers when multi-process (whichever worker answers).
    """
    # pylint: disable=import-outside-toplevel
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    path = _state["directory"]
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=path)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# ---- a process with no web server of its own (messenger-consumer) ------------------------------

class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """No line per scrape on stderr."""


def serve_in_thread(host: str, port: int, allow: Sequence[Any]) -> WSGIServer:
    """Serve this process's metrics at ``http://host:port/metrics`` from a daemon thread.

    Clients outside ``allow`` (ip networks) get 404 ``not-found``, as from the API.
    """
    from prometheus_client import make_wsgi_app  # pylint: disable=import-outside-toplevel
    exporter = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            allowed = any(ipaddress.ip_address(environ.get("REMOTE_ADDR", "")) in net for net in allow)
        except ValueError:
            allowed = False
        if not allowed or environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"message":"not-found"}']
        return exporter(environ, start_response)

    server = make_server(host or "0.0.0.0", port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
