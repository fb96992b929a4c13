"""The health gate and checks, with a scripted checker and a fake clock: no real waiting."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from lbgen.config import HealthConfig
from lbgen.errors import UsageError
from lbgen.health import CheckResult, HttpChecker, check_all, gate, required_count
from lbgen.model import Backend


def backend(name: str, env: str = "green", docker_health: str | None = None) -> Backend:
    return Backend(service="web", env=env, name=name, id=name, address="10.0.0.1", port=8080,
                   docker_health=docker_health)


class ScriptedChecker:
    """Answers from a per-backend script of True/False; the last answer repeats."""

    def __init__(self, scripts: dict[str, list[bool]]):
        self.scripts = scripts
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def check(self, b: Backend, health: HealthConfig) -> CheckResult:
        with self.lock:
            self.calls.append(b.name)
            script = self.scripts[b.name]
            ok = script.pop(0) if len(script) > 1 else script[0]
        return CheckResult(b, ok, "HTTP 200" if ok else "HTTP 503 on /health")


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


HEALTH = HealthConfig(interval=0.5, timeout=1.0, rise=2, fall=3)


def test_gate_passes_after_rise_consecutive_checks():
    clock = FakeClock()
    checker = ScriptedChecker({"g1": [True], "g2": [False, True]})
    result = gate([backend("g1"), backend("g2")], HEALTH, checker, timeout=10, clock=clock, sleep=clock.sleep)
    assert result.passed
    assert [b.name for b in result.healthy] == ["g1", "g2"]
    # g1 passes rounds 1-2; g2 fails round 1, passes rounds 2-3: 3 rounds, 2 sleeps.
    assert result.rounds == 3
    assert clock.sleeps == [0.5, 0.5]
    # A backend that has passed is not checked again.
    assert checker.calls.count("g1") == 2


def test_a_failure_resets_the_consecutive_count():
    clock = FakeClock()
    checker = ScriptedChecker({"g1": [True, False, True, True]})
    result = gate([backend("g1")], HEALTH, checker, timeout=10, clock=clock, sleep=clock.sleep)
    assert result.passed and result.rounds == 4


def test_gate_times_out_naming_each_failing_backend():
    clock = FakeClock()
    checker = ScriptedChecker({"g1": [True], "g2": [False]})
    result = gate([backend("g1"), backend("g2")], HEALTH, checker, timeout=3, clock=clock, sleep=clock.sleep)
    assert not result.passed
    assert result.summary() == "g2: HTTP 503 on /health"
    assert clock.now <= 3


def test_min_healthy_lets_the_gate_pass_with_some_failing():
    clock = FakeClock()
    checker = ScriptedChecker({"g1": [True], "g2": [False], "g3": [True]})
    result = gate([backend(n) for n in ("g1", "g2", "g3")], HEALTH, checker, timeout=5, required=2,
                  clock=clock, sleep=clock.sleep)
    assert result.passed
    assert [b.name for b in result.healthy] == ["g1", "g3"]
    assert [r.backend.name for r in result.failing] == ["g2"]


def test_progress_is_reported_each_round():
    clock = FakeClock()
    seen = []
    gate([backend("g1")], HEALTH, ScriptedChecker({"g1": [True]}), timeout=5, clock=clock, sleep=clock.sleep,
         on_round=lambda p: seen.append((dict(p.passes), p.time_left)))
    assert seen == [({"g1": 1}, 5.0), ({"g1": 2}, 4.5)]


@pytest.mark.parametrize("total,spec,expected", [
    (4, None, 4), (4, "2", 2), (4, "9", 4), (4, "50%", 2), (3, "50%", 2), (3, "100%", 3), (10, "1%", 1),
])
def test_required_count(total, spec, expected):
    assert required_count(total, spec) == expected


@pytest.mark.parametrize("spec", ["0", "-1", "abc", "0%", "150%", "%"])
def test_required_count_rejects_nonsense(spec):
    with pytest.raises(UsageError, match="--min-healthy"):
        required_count(3, spec)


def test_checks_run_concurrently():
    """Twenty slow backends cost about one check's time, not twenty."""
    class Slow:
        def check(self, b, health):
            time.sleep(0.2)
            return CheckResult(b, True, "HTTP 200")

    start = time.monotonic()
    results = check_all([backend(f"b{i}") for i in range(20)], HEALTH, Slow())
    assert len(results) == 20 and all(r.ok for r in results)
    assert [r.backend.name for r in results] == [f"b{i}" for i in range(20)]
    assert time.monotonic() - start < 2.0


def test_http_checker_reports_status_and_errors():
    answers = {"http://10.0.0.1:8080/health": (200, "ok")}

    def get(url, timeout):
        if url in answers:
            return answers[url]
        raise TimeoutError("timeout after 1s")

    checker = HttpChecker(get)
    assert checker.check(backend("g1"), HEALTH) == CheckResult(backend("g1"), True, "HTTP 200")
    answers["http://10.0.0.1:8080/health"] = (503, "")
    assert checker.check(backend("g1"), HEALTH).detail == "HTTP 503 on /health"
    answers.clear()
    assert checker.check(backend("g1"), HEALTH).detail == "timeout after 1s"


def test_http_checker_requires_docker_healthy_first():
    checker = HttpChecker(lambda url, t: (200, ""), docker_health=lambda b: "starting")
    result = checker.check(backend("g1", docker_health="starting"), HEALTH)
    assert not result.ok and result.detail == "docker health: starting"
    checker = HttpChecker(lambda url, t: (200, ""), docker_health=lambda b: "healthy")
    assert checker.check(backend("g1", docker_health="starting"), HEALTH).ok


def test_ipv6_backends_are_bracketed():
    urls = []
    checker = HttpChecker(lambda url, t: urls.append(url) or (200, ""))
    b = Backend(service="web", env=None, name="v6", id="v6", address="fd00::5", port=80)
    checker.check(b, HealthConfig(path="/h"))
    assert urls == ["http://[fd00::5]:80/h"]


def test_real_http_get_on_loopback():
    """http_get against a real server on 127.0.0.1: a status, a refused port, a black hole."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lbgen.health import http_get

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503 if self.path == "/bad" else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        port = server.server_address[1]
        assert http_get(f"http://127.0.0.1:{port}/health", 1.0) == (200, "ok")
        assert http_get(f"http://127.0.0.1:{port}/bad", 1.0)[0] == 503
        with pytest.raises(ConnectionError, match="connection refused"):
            http_get(f"http://127.0.0.1:{closed_port}/health", 1.0)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="timeout after 0.3s"):
            http_get(f"http://127.0.0.1:{silent.getsockname()[1]}/health", 0.3)
        assert time.monotonic() - start < 2
    finally:
        server.shutdown()
        silent.close()


def test_http_get_goes_straight_to_the_backend_and_reads_a_bounded_body(monkeypatch):
    """A check is what the proxy would see: HTTP_PROXY in lbgen's environment (a CI runner's) is not used,
    and a huge answer is cut at BODY_LIMIT, not read whole; its charset is honoured."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lbgen.health import BODY_LIMIT, http_get

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("é" if self.path == "/latin" else "x" * (BODY_LIMIT * 4)).encode("latin-1")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=iso-8859-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed.getsockname()[1]}")
    closed.close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert http_get(f"http://127.0.0.1:{port}/latin", 1.0) == (200, "é")
        status, body = http_get(f"http://127.0.0.1:{port}/big?x=1", 1.0)
        assert (status, len(body)) == (200, BODY_LIMIT)
    finally:
        server.shutdown()
