"""`lbgen maintenance on|off` through the real nginx and HAProxy: 503 with the message and Retry-After from
the first request after the command, kept across apply and switch, traffic back after off, nothing
restarted and not a connection failed meanwhile."""
from __future__ import annotations

import http.client
import threading

import pytest

from lbgen.model import Outcome
from scenario import Scenario

KINDS = ["nginx", "haproxy"]


def get(ip: str) -> tuple[int, str | None, str]:
    conn = http.client.HTTPConnection(ip, 80, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.getheader("Retry-After"), response.read().decode()
    finally:
        conn.close()


class Load(threading.Thread):
    """Requests in a loop; statuses counted, connection errors kept."""

    def __init__(self, ip: str) -> None:
        super().__init__(daemon=True)
        self.ip = ip
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = get(self.ip)[0]
                self.statuses[status] = self.statuses.get(status, 0) + 1
            except OSError as e:
                self.errors.append(str(e))


@pytest.mark.parametrize("kind", KINDS)
def test_maintenance_on_and_off_under_load_survives_apply_and_switch(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1)
    app = s.app()
    app.apply()
    ip = s.proxy_ip
    lab.wait_http(f"http://{ip}/", timeout=10)
    started = {c.name: c.attrs["State"]["StartedAt"] for env in s.backends.values() for c in env}
    load = Load(ip)
    load.start()
    try:
        result = app.maintenance(True, "web", message="Back at 10:00 UTC", retry_after=1800)
        assert result.changed
        assert get(ip) == (503, "1800", "Back at 10:00 UTC")  # the very next request
        app.apply()
        assert get(ip)[0] == 503
        app.switch("green", "web", timeout=30)
        assert get(ip)[:2] == (503, "1800")
        assert s.app().status().services[0].maintenance.message == "Back at 10:00 UTC"
        app.maintenance(False, "web")
        status, _, body = get(ip)
        assert status == 200 and body.startswith("env=green")
    finally:
        load.stop.set()
        load.join()
    assert load.errors == []
    assert set(load.statuses) == {200, 503} and load.statuses[503] > 0
    for env in s.backends.values():
        for c in env:
            c.reload()
            assert c.attrs["State"]["StartedAt"] == started[c.name] and c.status == "running"
    outcomes = [e.outcome for e in app.history("web")]
    assert outcomes[:3] == [Outcome.MAINTENANCE_OFF, Outcome.SWITCHED, Outcome.MAINTENANCE_ON]
