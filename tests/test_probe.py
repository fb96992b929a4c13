"""Checks through the engine: the real probe script under a real sh (a FakeEngine's exec runs it here,
against HTTP servers on loopback) with each HTTP client it can use; the direct-or-engine rule; and a switch
whose checks and verification go only through exec."""
from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

from fakeproxy import FakeProxy
from fakes import FakeEngine
from lbgen.app import Lbgen
from lbgen.config import HealthConfig, parse_config
from lbgen.ssh_transport import classify_ssh_error
from lbgen.engine import ExecResult
from lbgen.errors import ConfigError
from lbgen.health import check_all
from lbgen.model import Backend
from lbgen.probe import EngineChecker, Probe, docker_host_is_remote, resolve_mode, response_body

METHODS = [m for m, tool in (("curl", "curl"), ("bash", "bash"), ("wget", "wget")) if shutil.which(tool)]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(2)
        code = 503 if self.path.startswith("/bad") else 200
        body = f"lbgen generation=g1 host={self.headers.get('Host')} x={self.headers.get('X-Check')}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_engine() -> FakeEngine:
    """A FakeEngine whose `sh` is this machine's sh: the probe runs for real, 'inside' the container."""
    engine = FakeEngine()
    engine.add_proxy("proxy", "nginx")

    def sh(_engine: FakeEngine, _container: Any, argv: list[str]) -> ExecResult:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return ExecResult(done.returncode, done.stdout + done.stderr)

    engine.exec_handlers["sh"] = sh
    return engine


@pytest.mark.parametrize("method", METHODS)
def test_the_probe_checks_every_target_in_one_exec_with_each_http_client(port, method):
    engine = local_engine()
    probe = Probe(engine, "proxy", method)
    refused = closed_port()
    answers = probe.get_many([("127.0.0.1", port, "/health"), ("127.0.0.1", port, "/bad"),
                              ("127.0.0.1", refused, "/health"), ("127.0.0.1", port, "/slow")], timeout=0.5)
    assert answers[:2] == [200, 503]
    assert answers[2] == ("connection refused" if method != "wget" else "connection failed")
    assert answers[3] == "timeout after 0.5s"
    assert len(engine.execs) == 1 and engine.execs[0][0] == "proxy"


@pytest.mark.parametrize("method", METHODS)
def test_the_probe_sends_the_health_host_and_headers_and_returns_the_body(port, method):
    probe = Probe(local_engine(), "proxy", method)
    status, body = probe.get(f"http://127.0.0.1:{port}/lbgen/status", 2.0,
                             {"Host": "app.example", "X-Check": "yes"})
    assert (status, body) == (200, "lbgen generation=g1 host=app.example x=yes")  # trailing newlines dropped
    status, body = probe.get(f"http://127.0.0.1:{port}/x", 2.0)
    assert body == f"lbgen generation=g1 host=127.0.0.1:{port} x=None"
    with pytest.raises(ConnectionError):
        probe.get(f"http://127.0.0.1:{closed_port()}/", 1.0)


def test_a_container_without_any_http_client_says_so():
    engine = FakeEngine()
    engine.add_proxy("proxy", "nginx")
    engine.exec_handlers["sh"] = lambda e, c, argv: ExecResult(0, subprocess.run(
        [*argv[:4], "none", *argv[5:]], capture_output=True, text=True, check=False).stdout)
    answers = Probe(engine, "proxy").get_many([("127.0.0.1", 1, "/")], 1.0)
    assert answers == ["no HTTP client in the proxy container (curl, bash or wget)"]


def test_the_engine_checker_keeps_docker_health_and_the_expected_status_rule():
    engine = FakeEngine()
    engine.add_proxy("proxy", "nginx")
    engine.exec_handlers["sh"] = lambda e, c, argv: ExecResult(0, "1 ERR timeout after 1s\n0 404\n")
    b = [Backend(name=f"web-{i}", id=f"id{i}", service="web", env="green", address=f"192.0.2.{i}", port=8080)
         for i in (1, 2)]
    starting = Backend(name="web-3", id="id3", service="web", env="green", address="192.0.2.3", port=8080,
                       docker_health="starting")
    health = HealthConfig(path="/health", expect_status="404", timeout=1.0)
    results = check_all([b[0], starting, b[1]], health, EngineChecker(Probe(engine, "proxy")))
    assert [(r.backend.name, r.ok, r.detail) for r in results] == [
        ("web-1", True, "HTTP 404"), ("web-3", False, "docker health: starting"),
        ("web-2", False, "timeout after 1s")]
    argv = engine.execs[0][1]
    assert argv[4:] == ["auto", "1", "0", "0", "192.0.2.1", "8080", "/health", "192.0.2.2", "8080", "/health"]


def test_a_switch_in_engine_mode_reaches_backends_and_the_status_listener_only_through_exec():
    fp = FakeProxy("nginx")
    fp.backend("web-blue-1", "blue")
    fp.backend("web-green-1", "green")
    fp.backend("web-green-2", "green", status=503)
    real_sh = fp.engine.exec_handlers["sh"]

    def sh(engine: FakeEngine, container: Any, argv: list[str]) -> ExecResult:
        if argv[2] is not __import__("lbgen.probe", fromlist=["PROBE"]).PROBE:
            return real_sh(engine, container, argv)
        targets = argv[8 + int(argv[7]):]
        lines = []
        for i in range(0, len(targets), 3):
            try:
                status, body = fp.get(f"http://{targets[i]}:{targets[i + 1]}{targets[i + 2]}", 1.0)
                lines.append(f"{i // 3} {status}" + (f"\nHTTP/1.1 {status} OK\n\n{body}" if argv[6] == "1" else ""))
            except (ConnectionError, TimeoutError) as e:
                lines.append(f"{i // 3} ERR {e}")
        return ExecResult(0, "\n".join(lines) + "\n")

    fp.engine.exec_handlers["sh"] = sh

    def no_direct(url: str, timeout: float) -> tuple[int, str]:
        raise AssertionError(f"direct HTTP to {url}")

    config = parse_config(fp.config.source and open_text(fp))
    app = Lbgen(config, fp.engine, get=no_direct)
    app.apply()
    from lbgen.errors import HealthGateFailed

    with pytest.raises(HealthGateFailed, match="web-green-2: HTTP 503 on /health"):
        app.switch("green", timeout=0.05)
    fp.health[fp.engine.get_container("web-green-2").networks["lbnet"]] = 200
    result = app.switch("green", timeout=5)
    assert result.outcome == "switched" and fp.serving == result.generation


def open_text(fp: FakeProxy) -> str:
    from fakeproxy import CONFIG

    return "checks: engine\n" + CONFIG.format(kind=fp.kind)


def test_checks_is_auto_engine_or_direct_in_lbgen_yaml():
    from fakeproxy import CONFIG

    assert parse_config(CONFIG.format(kind="nginx")).checks == "auto"
    assert parse_config("checks: direct\n" + CONFIG.format(kind="nginx")).checks == "direct"
    with pytest.raises(ConfigError, match="checks"):
        parse_config("checks: ssh\n" + CONFIG.format(kind="nginx"))


@pytest.mark.parametrize("host,remote", [
    (None, False), ("unix:///var/run/docker.sock", False), ("tcp://127.0.0.1:2375", False),
    ("tcp://localhost:2376", False), ("ssh://deploy@prod", True), ("tcp://10.0.0.5:2376", True),
    ("tcp://docker.example:2376", True)])
def test_a_docker_host_on_another_machine_is_recognised(host, remote):
    assert docker_host_is_remote(host) is remote


def test_auto_asks_the_network_only_when_docker_is_local():
    asked = []

    def reach() -> bool:
        asked.append(1)
        return False

    assert resolve_mode("auto", "ssh://deploy@prod", reach)[0] == "engine" and not asked
    assert resolve_mode("direct", "ssh://deploy@prod", reach) == ("direct", "set")
    assert resolve_mode("auto", None, lambda: True)[0] == "direct"
    assert resolve_mode("auto", None, reach) == ("engine", "the app network is not reachable from here")


def test_core_decides_once_and_says_so_when_it_falls_back(monkeypatch):
    from fakeproxy import CONFIG
    from lbgen.core import Core
    from lbgen.probe import EngineChecker

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    fp = FakeProxy("nginx")
    calls = []
    logs: list[Any] = []
    core = Core(parse_config(CONFIG.format(kind="nginx")), fp.engine, log=logs.append,
                reach=lambda address, port: calls.append((address, port)) or False)
    assert isinstance(core.checker, EngineChecker) and core.check_mode == "engine"
    assert calls == [(fp.info.networks["lbnet"], 9180)]
    assert [e.name for e in logs] == ["checks"] and logs[0].get("via") == "engine"


def test_response_body_strips_headers_of_every_client():
    assert response_body("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody\n") == "body"
    assert response_body("  HTTP/1.1 200 OK\n  A: b\nbody") == "body"


@pytest.mark.parametrize("stderr,expected", [
    ("Host key verification failed.\n", "ssh host key of prod is unknown or changed"),
    ("deploy@prod: Permission denied (publickey).\n", "ssh authentication to prod failed"),
    ("ssh: connect to host prod port 22: Connection refused\n", "ssh to prod refused"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
     "ssh to prod works but its Docker daemon does not answer"),
    ("bash: line 1: docker: command not found\n", "no docker command on prod"),
])
def test_ssh_failures_are_named(stderr, expected):
    assert classify_ssh_error(255, stderr, "prod").startswith(expected)
