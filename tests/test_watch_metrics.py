"""Watch's metrics endpoint: `/metrics` in Prometheus text format on loopback, a clear error for a port in use."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from lbgen.errors import UsageError
from lbgen.watch.metrics import Metrics, MetricsServer


def test_metrics_server_on_loopback():
    metrics = Metrics()
    metrics.inc("lbgen_watch_reloads_total")
    metrics.inc("lbgen_watch_events_total", action="start")
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE lbgen_watch_reloads_total counter\nlbgen_watch_reloads_total 1.0\n" in body
        assert 'lbgen_watch_events_total{action="start"} 1.0\n' in body
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert e.value.code == 404
    finally:
        server.close()


def test_metrics_port_in_use_is_a_usage_error():
    first = MetricsServer(Metrics(), "127.0.0.1", 0)
    try:
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            MetricsServer(Metrics(), "127.0.0.1", first.port)
    finally:
        first.close()
