"""HAProxy without reloads, on real HAProxy (the test image, and the replica of the official image: non-root,
no socat, no curl): scale up, scale down, a health ejection and its re-admission go through the runtime API
(the worker's pid stays: no reload) and traffic follows; the file matches the runtime state, so a restarted
proxy serves the same set; a change the runtime API cannot make still reloads. The socket is reached with
bash's /dev/tcp, and with BusyBox nc where there is no bash. One scenario per image,
driven through every step."""
from __future__ import annotations

import pytest

from lbgen.proxies import haproxy_runtime as hr
from lbgen.render import parse_meta
from scenario import Scenario

pytestmark = pytest.mark.integration

SERVICE = """\
default_env: blue
health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}
"""


def runtime(s: Scenario) -> hr.RuntimeApi:
    app = s.app(log=lambda e: None)
    api = hr.runtime_for(app.core.proxy_engine, app.core.proxy.ref(), s.live().decode())
    assert api is not None, "the live config has lbgen's admin socket"
    return api


def hosts_served(s: Scenario, n: int = 24) -> set[str]:
    """The backends (by container name) answering n fresh requests through the proxy."""
    seen = set()
    for _ in range(n):
        body = s.lab.wait_http(s.url, timeout=5)
        seen.add(body.split("name=", 1)[1].split()[0])
    return seen


def ids(containers) -> set[str]:
    return {c.name for c in containers}


def in_sync(s: Scenario) -> bool:
    return not runtime(s).mismatched(s.live().decode())


@pytest.mark.parametrize("image", ["test", "official"])
def test_backends_join_and_leave_without_a_reload(lab, tmp_path, image):
    proxy = (lambda net: lab.official_haproxy(net)) if image == "official" else None
    s = Scenario(lab, tmp_path, "haproxy", blue=2, green=0, service_yaml=SERVICE, proxy=proxy,
                 proxy_yaml="spare_servers: 3\n")
    first = s.app().apply()
    assert first.via == "reload"
    s.lab.wait_for(lambda: hosts_served(s, 8) == ids(s.backends["blue"]), timeout=10, what="both blue backends")
    pid = runtime(s).pid()
    assert pid is not None

    # Scale up: two new backends fill spares; no reload, and traffic reaches them.
    for _ in range(2):
        s.add_backend("blue")
    result = s.app().apply()
    assert (result.changed, result.via) == (True, "runtime"), result
    assert runtime(s).pid() == pid and in_sync(s)
    live = s.live().decode()
    assert live.count("holds=") == 2 and parse_meta(live).base == first.generation
    s.lab.wait_for(lambda: hosts_served(s) == ids(s.backends["blue"]), timeout=10, what="all four backends")
    status = s.app().status()
    assert (status.proxy.served_generation, status.proxy.served_via) == (result.generation, "runtime")
    assert status.proxy.in_sync

    # Scale down: a backend leaves; its slot is put in maintenance, still no reload.
    gone = s.backends["blue"].pop(0)
    gone.remove(force=True)
    result = s.app().apply()
    assert result.via == "runtime" and runtime(s).pid() == pid and in_sync(s)
    assert hosts_served(s) == ids(s.backends["blue"])

    # Health ejection and re-admission (lbgen health --apply): no reload either.
    sick = s.backends["blue"][0]
    s.lab.http_get(f"http://{s.lab.ip(sick, s.net)}:8080/admin/health?status=503")
    s.lab.wait_for(lambda: s.app().health(apply=True) and f"server {sick.name} 127.0.0.1:1 weight 1 disabled"
                   in s.live().decode(), timeout=15, what="the ejection")
    assert runtime(s).pid() == pid and in_sync(s)
    assert hosts_served(s) == ids(s.backends["blue"][1:])
    s.lab.http_get(f"http://{s.lab.ip(sick, s.net)}:8080/admin/health?status=200")
    s.lab.wait_for(lambda: s.app().health(apply=True) and f"server {sick.name} 127.0.0.1:1"
                   not in s.live().decode(), timeout=15, what="the re-admission")
    assert runtime(s).pid() == pid and in_sync(s)
    s.lab.wait_for(lambda: hosts_served(s) == ids(s.backends["blue"]), timeout=10, what="the re-admitted backend")

    # A restart serves the same set: the file is what the runtime API made live.
    generation = parse_meta(s.live().decode()).generation
    s.proxy.restart(timeout=10)
    s.lab.wait_for(lambda: _status(s) == generation, timeout=15, what="the restarted proxy")
    assert in_sync(s) and hosts_served(s) == ids(s.backends["blue"])
    assert not s.app().apply().changed

    if image == "test":
        # Without bash (the Alpine images), BusyBox nc reaches the same socket: the script's other branch.
        s.proxy.exec_run(["sh", "-c", "mkdir -p /tmp/nb && for t in busybox nc sh; do ln -sf /usr/bin/busybox /tmp/nb/$t; done"])
        out = s.proxy.exec_run(["/tmp/nb/sh", "-c", hr.RUNTIME_SCRIPT, "sh", "9181", hr.SHOW_STATE],
                               environment={"PATH": "/tmp/nb"})
        assert out.exit_code == 0 and hr.parse_state(out.output.decode()) == runtime(s).state()

    # What the runtime API cannot change (a health setting) still reloads, and compacts the slots.
    pid = runtime(s).pid()
    s.write_config(service_yaml=SERVICE.replace("fall: 2", "fall: 3"))
    result = s.app().apply()
    assert result.via == "reload" and runtime(s).pid() != pid
    live = s.live().decode()
    assert "holds=" not in live and parse_meta(live).base is None and "# vacant" not in live
    assert hosts_served(s) == ids(s.backends["blue"])


def _status(s: Scenario) -> str | None:
    try:
        code, body = s.lab.http_get(f"http://{s.proxy_ip}:9180/lbgen/status")
    except (ConnectionError, TimeoutError):
        return None
    return body.split("generation=", 1)[1].split()[0] if code == 200 else None
