"""Beyond one bridge network on the real engine: the seed's per-env bridge networks, and a single-node
Swarm (initialised here, left again at the end even when a test fails) whose services' tasks lbgen routes
on an attachable overlay network, with real nginx and a real load client.

Overlay addresses are reachable only from the overlay, so lbgen's own HTTP (health checks, the proxy's
status listener) goes through a small forwarder container attached to the overlay and to a bridge
network the test process reaches; the load goes to the proxy's address on that bridge network.
"""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

from dockerlab import LABEL, http_get
from lbgen.app import Lbgen
from lbgen.config import parse_config
from lbgen.core import Core
from lbgen.docker_engine import DockerEngine
from lbgen.doctor import diagnose
from lbgen.model import OK, WARNING, Outcome
from lbgen.watch.log import EventLog
from lbgen.watch.loop import Watcher

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from loadgen import Load  # noqa: E402

pytestmark = pytest.mark.integration

FORWARDER = r"""
import http.server, urllib.error, urllib.parse, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        request = urllib.request.Request(q["u"][0], headers={k[2:]: v[0] for k, v in q.items() if k.startswith("h:")})
        try:
            with opener.open(request, timeout=float(q["t"][0])) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except Exception as e:
            status, body = 599, repr(e).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 9999), H).serve_forever()
"""


class Swarm:
    """The single-node Swarm of this module: its address pool, and overlay networks and services labelled
    with the lab's session."""

    def __init__(self, lab, pool: str) -> None:
        self.lab = lab
        self.pool = pool  # 172.30.P.0/24: ingress takes .0/26, the overlays .64/26, .128/26, .192/26
        self.slices = iter((64, 128, 192))

    def overlay(self, suffix: str) -> str:
        import docker

        name = f"{self.lab.prefix}{suffix}"
        base = self.pool.rsplit(".", 2)[0]
        subnet = f"{base}.{self.pool.split('.')[2]}.{next(self.slices)}/26"
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        self.lab.api.create_network(name, driver="overlay", attachable=True, ipam=ipam,
                                    labels={LABEL: self.lab.session})
        return name

    def service(self, name: str, network: str, replicas: int, env: str, *, labels=None, container_labels=None):
        import docker

        return self.lab.client.services.create(
            self.lab.image, ["/usr/local/bin/lbgen-test-backend"], name=f"{self.lab.prefix}{name}",
            env=["PORT=8080", f"LBGEN_TEST_ENV={env}", "LBGEN_TEST_NAME={{.Task.Name}}"],
            labels={LABEL: self.lab.session, **(labels or {})}, container_labels=container_labels or {},
            networks=[network], mode=docker.types.ServiceMode("replicated", replicas=replicas),
            stop_grace_period=2_000_000_000)

    def running(self, service, count: int, timeout: float = 60) -> None:
        def ready():
            tasks = service.tasks(filters={"desired-state": "running"})
            return len([t for t in tasks if t["Status"]["State"] == "running"]) == count
        self.lab.wait_for(ready, timeout=timeout, what=f"{count} running tasks of {service.name}")


@contextlib.contextmanager
def single_node_swarm(docker_lab) -> Iterator[Swarm]:
    """Init a single-node Swarm on a free 172.30.X.0/24 address pool; remove its services and leave it at
    the end, also on failure. RuntimeError when the engine is already in a Swarm."""
    api = docker_lab.api
    if (api.info().get("Swarm") or {}).get("LocalNodeState") != "inactive":
        raise RuntimeError("the engine is already part of a Swarm: only a Swarm made here is used")
    with docker_lab._subnet_lock:
        used = docker_lab._used_subnets()
        free = [f"172.30.{x}.0/24" for x in range(255, 0, -1) if f"172.30.{x}.0/24" not in used]
        gateway, pool = free[0], free[1]
        created_gw = not api.networks(names=["docker_gwbridge"])
        if created_gw:  # Swarm's own bridge, on an explicit subnet instead of a default pool
            api.create_network("docker_gwbridge", driver="bridge", labels={LABEL: docker_lab.session},
                               ipam={"Driver": "default", "Config": [{"Subnet": gateway}]},
                               options={"com.docker.network.bridge.name": "docker_gwbridge",
                                        "com.docker.network.bridge.enable_icc": "false",
                                        "com.docker.network.bridge.enable_ip_masquerade": "true"})
        init = subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr",
                               "127.0.0.1:2377", "--default-addr-pool", pool, "--default-addr-pool-mask-length",
                               "26"], capture_output=True, text=True, timeout=60)
    try:
        assert init.returncode == 0, init.stderr
        yield Swarm(docker_lab, pool)
    finally:
        for service in api.services(filters={"label": f"{LABEL}={docker_lab.session}"}):
            api.remove_service(service["ID"])
        docker_lab.wait_for(lambda: not api.containers(all=True, filters={"label": "com.docker.swarm.task.id"}),
                            timeout=60, what="the Swarm tasks to go")
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, timeout=60)
        for network in api.networks(filters={"label": f"{LABEL}={docker_lab.session}"}):
            try:
                api.remove_network(network["Id"])
            except Exception:  # noqa: BLE001 - an overlay goes with the Swarm; the lab's close() retries the rest
                pass


@pytest.fixture(scope="module")
def swarm(docker_lab):
    if (docker_lab.api.info().get("Swarm") or {}).get("LocalNodeState") != "inactive":
        pytest.skip("the engine is already part of a Swarm: these tests only use a Swarm they create")
    with single_node_swarm(docker_lab) as s:
        yield s


def forwarding_get(address: str):
    """lbgen's HttpGet, sent from inside the overlay by the forwarder container at `address`."""
    def get(url, timeout, headers=None):
        query = {"u": url, "t": str(timeout), **{f"h:{k}": v for k, v in (headers or {}).items()}}
        status, body = http_get(f"http://{address}:9999/?{urllib.parse.urlencode(query)}", timeout=timeout + 2)
        if status == 599:  # the forwarder got no answer
            raise ConnectionError(body)
        return status, body
    return get


def overlay_set_up(lab, swarm, overlay: str):
    """A bridge network the test process reaches, nginx on it and on the overlay, a forwarder; the get."""
    front, _ = lab.network("front")
    proxy = lab.nginx_proxy(front, extra_networks=[overlay])
    forwarder = lab.container(front, "fwd", command=["python3", "-c", FORWARDER], extra_networks=[overlay])
    lab.wait_http(f"http://{lab.ip(forwarder, front)}:9999/?u=http://127.0.0.1:1/&t=1", timeout=10, status=None)
    return front, proxy, forwarding_get(lab.ip(forwarder, front))


def config(lab, networks: str, proxy: str):
    return parse_config(f"network: {networks}\nlabel_prefix: {lab.label_prefix}\n"
                        f"proxy: {{kind: nginx, container: {proxy}}}\n"
                        "services:\n  web:\n    default_env: blue\n"
                        "    health: {path: /health, interval: 200ms, timeout: 1s, rise: 1, fall: 2}\n")


def test_tasks_are_discovered_from_service_labels_and_container_labels(lab, swarm):
    overlay = swarm.overlay("ov-disc")
    p = lab.label_prefix
    by_service = swarm.service("disc-a", overlay, 2, "blue", labels={f"{p}.service": "web", f"{p}.env": "blue",
                                                                      f"{p}.port": "8080"})
    by_container = swarm.service("disc-b", overlay, 1, "green",
                                 container_labels={f"{p}.service": "web", f"{p}.env": "green", f"{p}.port": "8080"})
    swarm.running(by_service, 2)
    swarm.running(by_container, 1)
    front, proxy, get = overlay_set_up(lab, swarm, overlay)
    app = Lbgen(config(lab, overlay, proxy.name), get=get, log=lambda e: None)
    backends = app.discover().backends
    assert sorted((b.env, b.swarm_service, b.network, b.source) for b in backends) == [
        ("blue", by_service.name, overlay, "swarm"), ("blue", by_service.name, overlay, "swarm"),
        ("green", by_container.name, overlay, "swarm")]
    task_ips = sorted(a["Addresses"][0].split("/")[0] for t in by_service.tasks(filters={"desired-state": "running"})
                      for a in t["NetworksAttachments"] if a["Network"]["Spec"]["Name"] == overlay)
    assert sorted(b.address for b in backends if b.env == "blue") == task_ips  # each task, never the VIP
    assert all(b.node for b in backends)


def test_blue_green_between_two_services_under_load_drops_nothing(lab, swarm):
    overlay = swarm.overlay("ov-bg")
    p = lab.label_prefix
    services = {env: swarm.service(f"web-{env}", overlay, 2, env, labels={f"{p}.service": "web", f"{p}.env": env,
                                                                          f"{p}.port": "8080"})
                for env in ("blue", "green")}
    for service in services.values():
        swarm.running(service, 2)
    front, proxy, get = overlay_set_up(lab, swarm, overlay)
    app = Lbgen(config(lab, overlay, proxy.name), get=get, log=lambda e: None)
    assert app.apply().changed
    url = f"http://{lab.ip(proxy, front)}/"
    lab.wait_http(url, timeout=10)
    load = Load(url, workers=4, max_seconds=60).start()
    time.sleep(1.0)
    result = app.switch("green", "web", timeout=30, stop_old=True, drain=1.0)
    time.sleep(1.0)
    load.stop()
    assert result.outcome is Outcome.SWITCHED and result.stopped == [services["blue"].name]
    assert load.failed == 0, load.errors
    assert load.envs["blue"] > 0 and load.envs["green"] > 0
    services["blue"].reload()
    assert services["blue"].attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0


def test_the_seeds_per_env_networks_on_plain_bridges(lab):
    blue_net, _ = lab.network("blue-env")
    green_net, _ = lab.network("green-env")
    infra, _ = lab.network("infrastructure")
    proxy = lab.nginx_proxy(infra, extra_networks=[blue_net, green_net])
    blue = [lab.backend(blue_net, "web", "blue") for _ in range(2)]
    green = [lab.backend(green_net, "web", "green") for _ in range(2)]
    app = Lbgen(config(lab, f"[{blue_net}, {green_net}]", proxy.name), get=http_get, log=lambda e: None)
    found = {b.name: b.network for b in app.discover().backends}
    assert found == {**{c.name: blue_net for c in blue}, **{c.name: green_net for c in green}}
    # blue and green cannot reach each other; the proxy reaches both
    code = blue[0].exec_run(["python3", "-c", "import socket,sys; s=socket.socket(); s.settimeout(1); "
                             f"sys.exit(s.connect_ex(('{lab.ip(green[0], green_net)}', 8080)))"]).exit_code
    assert code != 0
    assert app.apply().changed
    url = f"http://{lab.ip(proxy, infra)}/"
    load = Load(url, workers=4, max_seconds=60).start()
    time.sleep(0.5)
    result = app.switch("green", "web", timeout=20)
    time.sleep(0.5)
    load.stop()
    assert result.outcome is Outcome.SWITCHED
    assert load.failed == 0, load.errors
    assert load.envs["blue"] > 0 and load.envs["green"] > 0

    # doctor checks every listed network: all attached, then the proxy taken off green's
    [network] = [c for c in diagnose(app.core).checks if c.name == "network"]
    assert network.status == OK and blue_net in network.message and green_net in network.message
    lab.client.networks.get(green_net).disconnect(proxy)
    checks = [c for c in diagnose(app.core).checks if c.name == "network"]
    assert [c.status for c in checks] == [OK, WARNING] and green_net in checks[1].message
    assert checks[1].fix == f"docker network connect {green_net} {proxy.name}"


def seen_through(url: str, names: set[str], timeout: float) -> set[str]:
    """GET url until every name in `names` answered (or the timeout); the names that did."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not names <= seen and time.monotonic() < deadline:
        try:
            status, body = http_get(url, timeout=2)
        except (ConnectionError, TimeoutError):
            continue
        match = re.search(r"name=(\S+)", body) if status == 200 else None
        if match:
            seen.add(match.group(1))
    return seen & names


def docker_cli(*args: str) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def running_task_names(service) -> set[str]:
    tasks = service.tasks(filters={"desired-state": "running"})
    return {f"{service.name}.{t['Slot']}.{t['ID']}" for t in tasks if t["Status"]["State"] == "running"}


def test_watch_follows_scale_up_scale_down_and_a_rolling_update_under_load(lab, swarm):
    """No health pass (its rediscovery would hide a missing event path): Swarm's service events, the
    task containers' events and the task poll alone keep the pools right, and no request fails."""
    overlay = swarm.overlay("ov-watch")
    p = lab.label_prefix
    service = swarm.service("watched-blue", overlay, 2, "blue", labels={f"{p}.service": "web", f"{p}.env": "blue",
                                                                    f"{p}.port": "8080"})
    swarm.running(service, 2)
    front, proxy, get = overlay_set_up(lab, swarm, overlay)
    out = io.StringIO()
    engine = DockerEngine()
    watcher = Watcher(lambda: Core(config(lab, overlay, proxy.name), engine, get=get), engine,
                      log=EventLog(out), health=False, interval=3600.0)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    url = f"http://{lab.ip(proxy, front)}/"

    def routed() -> set[str]:
        return {b.name for b in watcher.last_pools.get("web", ())}

    load = None
    try:
        lab.wait_for(lambda: routed() == running_task_names(service), timeout=30, what="the startup sync")
        load = Load(url, workers=4, max_seconds=240).start()
        time.sleep(1.0)

        docker_cli("service", "scale", "--detach", f"{service.name}=5")
        swarm.running(service, 5)
        lab.wait_for(lambda: routed() == running_task_names(service), timeout=15, what="5 tasks routed")
        assert seen_through(url, running_task_names(service), timeout=15) == running_task_names(service)

        docker_cli("service", "scale", "--detach", f"{service.name}=2")
        swarm.running(service, 2)
        lab.wait_for(lambda: routed() == running_task_names(service), timeout=15, what="2 tasks routed")
        lab.wait_for(lambda: len(lab.api.containers(filters={"label": f"com.docker.swarm.service.id={service.id}"})) == 2,
                     timeout=30, what="the scaled-down tasks' containers to stop")
        time.sleep(1.0)
        assert load.failed == 0, load.errors

        before = running_task_names(service)
        docker_cli("service", "update", "--detach", "--env-add", "RELEASE=2", service.name)  # a new task spec

        def updated() -> bool:
            service.reload()
            state = (service.attrs.get("UpdateStatus") or {}).get("State")
            now = running_task_names(service)
            return state == "completed" and len(now) == 2 and not now & before
        lab.wait_for(updated, timeout=90, what="the rolling update")
        lab.wait_for(lambda: routed() == running_task_names(service), timeout=15, what="the updated tasks routed")
        assert seen_through(url, running_task_names(service), timeout=15) == running_task_names(service)
        time.sleep(1.0)
        load.stop()
        assert load.failed == 0, load.errors
        assert "reason=swarm-tasks" in out.getvalue() or "reason=service-update" in out.getvalue()
    finally:
        if load is not None:
            load.stop()
        stop.set()
        watcher.wake()
        thread.join(timeout=30)
