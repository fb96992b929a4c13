"""A TCP service (`mode: tcp`) through the real nginx (stream {} in the main-context file, included from
nginx.conf after Debian's load_module lines) and HAProxy (`mode tcp`): a TCP echo backend
(tests/images/routes/routeapp.py, TCP_PORT) switched blue -> green and rolled back under a stream of fresh
connections with none failing; the gate's connect checks refusing an env that does not listen; maintenance
refusing new connections; `health`, `status` and `doctor` on it. One test per proxy: the containers are
reused through the whole story."""
from __future__ import annotations

import dataclasses
import socket
import threading

import pytest

from lbgen.doctor import diagnose
from lbgen.errors import ExitCode, HealthGateFailed
from lbgen.model import OK, WARNING

KINDS = ["nginx", "haproxy"]
TCP_PORT = 7000
INCLUDE = "include /etc/nginx/lbgen-main*.conf;"


def talk(ip: str, port: int = TCP_PORT) -> str:
    """One fresh connection: the backend's greeting names it, then one line is echoed. The backend's name."""
    with socket.create_connection((ip, port), timeout=5) as conn:
        stream = conn.makefile("rwb")
        greeting = stream.readline().decode()
        if not greeting.startswith("name="):
            raise ConnectionError(f"no greeting (got {greeting!r})")
        stream.write(b"ping\n")
        stream.flush()
        if stream.readline() != b"ping\n":
            raise ConnectionError("no echo")
        return greeting.strip().split("=", 1)[1]


def env_of(name: str) -> str:
    return name.split("echo-", 1)[1].split("-", 1)[0]


class Load(threading.Thread):
    """Fresh connections in a loop until stopped; the env each reached, and every failure."""

    def __init__(self, ip: str) -> None:
        super().__init__(daemon=True)
        self.ip = ip
        self.stop = threading.Event()
        self.envs: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() and len(self.envs) + len(self.errors) < 100_000:
            try:
                self.envs.append(env_of(talk(self.ip)))
            except OSError as e:
                self.errors.append(f"{type(e).__name__}: {e}")


def refused(ip: str) -> bool:
    """A new connection is refused: closed at once, before the backend's greeting (or not accepted)."""
    try:
        talk(ip)
    except OSError:
        return True
    return False


@pytest.mark.parametrize("kind", KINDS)
def test_a_tcp_service_switches_under_load_with_connect_checks(lab, tmp_path, kind):
    from lbgen.app import Lbgen
    from lbgen.config import load_config

    net, _ = lab.network("tcp")
    if kind == "nginx":
        proxy = lab.nginx_proxy(net)
        # After Debian's `include /etc/nginx/modules-enabled/*.conf;`, which loads the stream module.
        proxy.exec_run(["sh", "-c", f"echo '{INCLUDE}' >> /etc/nginx/nginx.conf"], user="root")
    else:
        proxy = lab.haproxy_proxy(net)
    image = lab.derived_image("routes")
    labels = {f"{lab.label_prefix}.port": str(TCP_PORT)}
    listening = {"TCP_PORT": str(TCP_PORT)}
    for env, count in (("blue", 2), ("green", 1)):
        for i in range(1, count + 1):
            lab.backend(net, "echo", env, name=f"echo-{env}-{i}", image=image, labels=labels, env_vars=listening)
    lab.backend(net, "echo", "deaf", name="echo-deaf-1", image=image, labels=labels)  # no TCP listener
    config = tmp_path / "lbgen.yaml"
    config.write_text(
        f"network: {net}\nlabel_prefix: {lab.label_prefix}\n"
        f"proxy:\n  kind: {kind}\n  container: {proxy.name}\n"
        "services:\n"
        f"  echo:\n    mode: tcp\n    listen: {TCP_PORT}\n    algorithm: least_conn\n    default_env: blue\n"
        "    health: {interval: 200ms, timeout: 1s, rise: 2, fall: 2}\n")
    app = Lbgen(load_config(config), log=lambda e: None)
    app.apply()
    ip = lab.ip(proxy, net)
    lab.wait_for(lambda: not refused(ip), timeout=10, what="the TCP service to answer")
    assert {env_of(talk(ip)) for _ in range(6)} == {"blue"}

    load = Load(ip)
    load.start()
    try:
        result = app.switch("green", "echo", timeout=30)
        assert result.gate is not None and result.gate.passed
        assert {env_of(talk(ip)) for _ in range(4)} == {"green"}  # every new connection, at once
        # The gate's connect checks: an env that does not listen is refused (exit 5), nothing changes.
        live = proxy.exec_run(["cat", "/etc/nginx/lbgen-main.conf" if kind == "nginx"
                               else "/usr/local/etc/haproxy/haproxy.cfg"]).output
        with pytest.raises(HealthGateFailed) as info:
            app.switch("deaf", "echo", timeout=2)
        assert info.value.exit_code == ExitCode.GATE
        assert "echo-deaf-1" in str(info.value) and "connection refused" in str(info.value)
        assert "traffic stays on green" in str(info.value)
        assert proxy.exec_run(["cat", "/etc/nginx/lbgen-main.conf" if kind == "nginx"
                               else "/usr/local/etc/haproxy/haproxy.cfg"]).output == live
        app.rollback("echo", timeout=30)
        assert {env_of(talk(ip)) for _ in range(4)} == {"blue"}
    finally:
        load.stop.set()
        load.join()
    print(f"tcp load {kind}: {len(load.envs)} connections, {len(load.errors)} failed")  # shown with -s
    assert load.errors == [], load.errors[:5]
    assert {"blue", "green"} <= set(load.envs)

    report = app.health("echo")
    assert report.status == OK
    [svc] = report.services
    assert svc.active_env == "blue" and svc.healthy == 2
    assert app.status().services[0].active_env == "blue"
    # The same connect checks from inside the proxy container (checks: engine, a CI runner's set-up).
    inside = Lbgen(dataclasses.replace(load_config(config), checks="engine"), log=lambda e: None)
    [svc] = inside.health("echo").services
    assert [(b.healthy, b.detail) for b in svc.backends] == [(True, "TCP connect ok")] * 2
    with pytest.raises(HealthGateFailed, match="echo-deaf-1: connection refused"):
        inside.switch("deaf", "echo", timeout=1)

    # Maintenance refuses new connections, the backends untouched; off brings them back.
    app.maintenance(True, "echo")
    assert refused(ip)
    app.apply()  # kept across apply
    assert refused(ip)
    app.maintenance(False, "echo")
    assert env_of(talk(ip)) == "blue"

    checks = {c.name: c for c in diagnose(app.core).checks}
    # doctor's connect checks: only the env that does not listen is unreachable.
    assert checks["service echo"].status == WARNING, checks["service echo"]
    assert checks["service echo"].message.endswith("unreachable from here: "
                                                   f"{lab.prefix}echo-deaf-1: connection refused")
    if kind == "nginx":
        assert checks["main-context"].status == OK and checks["stream-module"].status == OK, checks


def test_the_connect_probe_works_with_busybox_alone(lab):
    """An image without bash (Alpine's): the probe falls back to BusyBox's nc (`-z`, or `-e true` in the
    small nc Debian's BusyBox has), run here with nothing but BusyBox applets on PATH."""
    from lbgen.probe import CONNECT_PROBE

    listener = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 7777)); s.listen(8); time.sleep(60)"
    box = lab.container(None, "busybox-probe", command=["python3", "-c", listener])
    setup = "mkdir -p /tmp/bb && for a in sh nc timeout true; do ln -sf /bin/busybox /tmp/bb/$a; done"
    assert box.exec_run(["sh", "-c", setup]).exit_code == 0
    lab.wait_for(lambda: box.exec_run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7777"]).exit_code == 0,
                 timeout=10, what="the listener")
    result = box.exec_run(["/tmp/bb/sh", "-c", CONNECT_PROBE, "sh", "2", "127.0.0.1", "7777", "127.0.0.1", "7778"],
                          environment={"PATH": "/tmp/bb"})
    assert sorted(result.output.decode().splitlines()) == ["0 OK", "1 ERR connection refused"]
