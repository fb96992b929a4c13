"""Watch's counters and gauges (plus the last health pass's figures) and the HTTP server for `/metrics`."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping

from lbgen import monitor
from lbgen.errors import UsageError

METRICS = {
    "lbgen_watch_events_total": ("counter", "Docker events received, by action."),
    "lbgen_watch_applies_total": ("counter", "Applies by result: changed (the proxy reloaded), unchanged, failed."),
    "lbgen_watch_reloads_total": ("counter", "Proxy reloads done by lbgen watch."),
    "lbgen_watch_apply_failures_total": ("counter", "Applies that failed (the last good config stayed live)."),
    "lbgen_watch_reconnects_total": ("counter", "Times the Docker event stream was lost."),
    "lbgen_watch_connected": ("gauge", "1 while lbgen watch follows the Docker event stream."),
    "lbgen_watch_last_apply_timestamp_seconds": ("gauge", "When the last successful apply ran (Unix time)."),
    "lbgen_watch_last_reload_timestamp_seconds": ("gauge", "When lbgen watch last reloaded the proxy (Unix time)."),
    "lbgen_watch_last_apply_duration_seconds": ("gauge", "How long the last successful apply took."),
    "lbgen_routed_backends": ("gauge", "Backends in each service's pool after the last apply."),
}


class Metrics:
    """Counters and gauges of watch mode, plus the last health pass's figures; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {name: {} for name in METRICS}
        self._health: monitor.HealthReport | None = None
        for name, (kind, _) in METRICS.items():
            if kind == "counter" and name not in ("lbgen_watch_events_total", "lbgen_watch_applies_total"):
                self._values[name][()] = 0

    def inc(self, name: str, by: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0) + by

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def set_all(self, name: str, samples: Mapping[tuple[tuple[str, str], ...], float]) -> None:
        with self._lock:
            self._values[name] = dict(samples)

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0)

    def set_health(self, report: monitor.HealthReport) -> None:
        with self._lock:
            self._health = report

    def text(self) -> str:
        out = monitor.PromText()
        with self._lock:
            for name, (kind, help_text) in METRICS.items():
                samples = sorted(self._values[name].items())
                if samples:
                    out.metric(name, kind, help_text, [(dict(k), v) for k, v in samples])
            health = self._health
        text = out.text() if out.lines else ""
        return text + (health.prometheus() if health is not None else "")


class MetricsServer:
    """`GET /metrics` in Prometheus text format, on `host:port` (loopback by default); port 0 picks one."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "try /metrics")
                    return
                body = metrics.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise UsageError(f"--metrics-port: cannot listen on {host}:{port}: {e.strerror or e}") from e
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="lbgen-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

