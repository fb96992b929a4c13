"""Watch's counters and gauges (prometheus_client's, in a private registry) plus the last health pass's
figures, and the HTTP server for `/metrics` (prometheus_client's WSGI app)."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Iterator, Mapping
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer, generate_latest

from lbgen.report import HealthCollector, HealthReport
from lbgen.errors import UsageError

# name -> (type, help, label names). Counter names keep their `_total`: prometheus_client exposes them so.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lbgen_watch_events_total": ("counter", "Docker events received, by action.", ("action",)),
    "lbgen_watch_applies_total": ("counter", "Applies by result: changed (the proxy reloaded), unchanged, failed.",
                                  ("result",)),
    "lbgen_watch_reloads_total": ("counter", "Proxy reloads done by lbgen watch.", ()),
    "lbgen_watch_apply_failures_total": ("counter", "Applies that failed (the last good config stayed live).", ()),
    "lbgen_watch_reconnects_total": ("counter", "Times the Docker event stream was lost.", ()),
    "lbgen_watch_connected": ("gauge", "1 while lbgen watch follows the Docker event stream.", ()),
    "lbgen_watch_last_apply_timestamp_seconds": ("gauge", "When the last successful apply ran (Unix time).", ()),
    "lbgen_watch_last_reload_timestamp_seconds": ("gauge", "When lbgen watch last reloaded the proxy (Unix time).",
                                                  ()),
    "lbgen_watch_last_apply_duration_seconds": ("gauge", "How long the last successful apply took.", ()),
    "lbgen_routed_backends": ("gauge", "Backends in each service's pool after the last apply.", ("service",)),
}


class Metrics:
    """Counters and gauges of watch mode, plus the last health pass's figures; thread-safe.

    The metric objects are not registered themselves: `self.registry` holds this object as its one
    collector, which exposes a metric once it has a value (unlabelled counters from the start), samples
    sorted by label, no `_created` samples, and `set_all` atomically with respect to a scrape.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Counter | Gauge] = {
            name: (Counter if kind == "counter" else Gauge)(name, help_text, labels, registry=None)
            for name, (kind, help_text, labels) in METRICS.items()}
        self._valued = {name for name, (kind, _, labels) in METRICS.items() if kind == "counter" and not labels}
        self._health: HealthReport | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def _child(self, name: str, labels: Mapping[str, str]) -> Any:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, by: float = 1, **labels: str) -> None:
        with self._lock:
            self._child(name, labels).inc(by)
            self._valued.add(name)

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._child(name, labels).set(value)
            self._valued.add(name)

    def set_all(self, name: str, samples: Mapping[tuple[tuple[str, str], ...], float]) -> None:
        """Replace every sample of a labelled gauge: `{(("service", "web"),): 3, ...}`."""
        with self._lock:
            self._metrics[name].clear()
            for key, value in samples.items():
                self._child(name, dict(key)).set(value)
            self._valued.add(name)

    def get(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0 if value is None else value

    def applied(self, changed: bool, routed: Mapping[str, int], took: float, now: float) -> None:
        """A watch apply: `changed` (a reload), the routed backends per service, its duration, wall time."""
        if changed:
            self.inc("lbgen_watch_reloads_total")
            self.set("lbgen_watch_last_reload_timestamp_seconds", now)
        self.inc("lbgen_watch_applies_total", result="changed" if changed else "unchanged")
        self.set("lbgen_watch_last_apply_timestamp_seconds", now)
        self.set("lbgen_watch_last_apply_duration_seconds", took)
        self.set_all("lbgen_routed_backends", {(("service", name),): n for name, n in routed.items()})

    def set_health(self, report: HealthReport) -> None:
        with self._lock:
            self._health = report

    def collect(self) -> Iterator[Metric]:
        """The prometheus_client collector protocol: watch's metric families, then the health report's."""
        with self._lock:
            families = [family for name in METRICS if name in self._valued
                        for family in self._metrics[name].collect()]
            health = self._health
        for family in families:
            family.samples = sorted((s for s in family.samples if not s.name.endswith("_created")),
                                    key=lambda s: sorted(s.labels.items()))
            if family.samples:
                yield family
        if health is not None:
            yield from HealthCollector(health).collect()

    def text(self) -> str:
        return generate_latest(self.registry).decode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class MetricsServer:
    """`GET /metrics` in Prometheus text format on `host:port` (loopback by default; port 0 picks one), served
    by prometheus_client's WSGI app in a thread per request; other paths are 404."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        exposition = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"try /metrics\n"]
            body: Iterable[bytes] = exposition(environ, start_response)
            return body

        try:
            self.server = make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError as e:
            raise UsageError(f"--metrics-port: cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.host = host
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, name="lbgen-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
