"""`lbgen health`: one concurrent pass, hysteresis across passes, never an empty pool, and the report as a
monitoring plugin, JSON and Prometheus text. Driven through FakeEngine with a fake proxy (World)."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner

from fakeproxy import FakeProxy
from fakes import FakeEngine
from lbgen.model import HealthCount
from lbgen.events import event
from lbgen.app import Lbgen
from lbgen.cli import cli
from lbgen.config import HealthConfig
from lbgen.engine import ContainerInfo
from lbgen.health import CheckResult
from lbgen.model import Backend
from lbgen.model import CRITICAL, OK, UNKNOWN, WARNING
from lbgen.monitor import ServiceTargets, advance, fold, run_checks
from lbgen.report import HealthReport
from lbgen.state import State

CONFIG = """\
network: lbnet
proxy: {kind: nginx, container: proxy}
services:
  web:
    listen: 80
    default_env: blue
    health: {path: /health, timeout: 1s, rise: 2, fall: 2}
  api:
    listen: 8080
    health: {path: /ping, timeout: 1s, rise: 1, fall: 1}
"""


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class World(FakeProxy):
    """tests/fakeproxy.py's proxy (real install scripts, reloads that serve the file's generation) with two
    services, a fake clock, and each backend's /health answer set by name (`answer`)."""

    def __init__(self, config_text: str = CONFIG, clock: FakeClock | None = None) -> None:
        super().__init__("nginx", config_text)
        self.clock = clock or FakeClock()
        self.reloads = 0
        self.logs: list[str] = []
        self.gets: list[str] = []

    def backend(self, name: str, service: str = "web", env: str | None = "blue", **kw: Any) -> ContainerInfo:
        info = self.engine.add_backend(name, service, env, network="lbnet", **kw)
        self.health[info.networks["lbnet"]] = 200
        return info

    def address(self, name: str) -> str:
        return self.engine.get_container(name).networks["lbnet"]

    def answer(self, name: str, value: int | str) -> None:
        """An HTTP status, or "timeout" / "refused"."""
        if value == "refused":
            self.health.pop(self.address(name), None)
        else:
            self.health[self.address(name)] = 0 if value == "timeout" else int(value)

    def reject(self, output: str | None) -> None:
        """Make `nginx -t` fail with `output` (None: accept again)."""
        self.validate = (lambda data: (True, "")) if output is None else (lambda data: (False, output))

    def get(self, url: str, timeout: float) -> tuple[int, str]:
        self.gets.append(url)
        return super().get(url, timeout)

    def _reload(self, engine: FakeEngine, container: Any, sig: str) -> None:
        self.reloads += 1
        super()._reload(engine, container, sig)

    def app(self, **kw: Any) -> Lbgen:
        kw.setdefault("log", self.logs.append)
        return Lbgen(self.config, self.engine, get=self.get, clock=self.clock, sleep=self.clock.sleep, **kw)

    def live_text(self) -> str:
        return (self.live() or b"").decode()

    def routed(self) -> list[str]:
        """Names of the servers in the live config, in order (the template notes each server's name)."""
        return [line.split("# ")[1].split()[0] for line in self.live_text().splitlines()
                if line.strip().startswith("server ") and "# " in line]

    def state(self) -> dict[str, Any]:
        """The record's JSON on the engine."""
        return self.recorded()


def standard_world() -> World:
    w = World()
    for name in ("web-1", "web-2", "web-3"):
        w.backend(name)
    w.backend("web-green-1", env="green")
    w.backend("api-1", service="api", env=None)
    w.record(web="blue")  # a switch on record: the active env is not assumed
    w.app().apply()
    w.reloads = 0
    w.logs.clear()
    return w


# --- hysteresis, pure ----------------------------------------------------------------------------------

def b(name: str) -> Backend:
    return Backend("web", "blue", name, "id-" + name, "10.0.0.1", 8080)


def r(name: str, ok: bool) -> CheckResult:
    return CheckResult(b(name), ok, "HTTP 200" if ok else "HTTP 503 on /health")


HC = HealthConfig(rise=2, fall=3)
HC_ = HealthCount


def run_passes(outcomes: list[bool], health: HealthConfig = HC) -> list[tuple[bool, list[str]]]:
    counts: dict = {}
    seen = []
    for ok in outcomes:
        counts, changes = advance(counts, [r("a", ok)], {"id-a"}, health)
        seen.append((bool("id-a" in counts and counts["id-a"].ejected), [c[2] for c in changes]))
    return seen


def test_fall_failed_passes_in_a_row_eject():
    assert run_passes([False, False, False]) == [(False, []), (False, []), (True, ["eject"])]


def test_a_pass_in_between_resets_the_failures():
    assert [e for e, _ in run_passes([False, False, True, False, False])] == [False] * 5


def test_rise_passes_in_a_row_readmit_and_a_failure_restarts_the_count():
    outcomes = [False, False, False, True, False, True, True]
    assert run_passes(outcomes) == [
        (False, []), (False, []), (True, ["eject"]),
        (True, []), (True, []), (True, []), (False, ["readmit"]),
    ]


def test_steady_passes_change_nothing_so_nothing_is_written():
    counts, changes = advance({}, [r("a", True), r("b", True)], {"id-a", "id-b"}, HC)
    assert counts == {} and changes == []
    # An ejected backend that keeps failing: counts stop at fall, so the next pass changes nothing either.
    ejected = {"id-a": HC_("a", 3, 0, True)}
    assert advance(ejected, [r("a", False)], {"id-a"}, HC) == (ejected, [])


def test_backends_gone_are_dropped_and_unchecked_ones_keep_their_counts():
    counts = {"id-a": HC_("a", 1, 0, False),
              "id-b": HC_("b", 3, 0, True),
              "id-c": HC_("c", 2, 0, False)}
    new, _ = advance(counts, [r("a", False)], {"id-a", "id-b"}, HC)
    assert new == {"id-a": HC_("a", 2, 0, False),
                   "id-b": HC_("b", 3, 0, True)}


def test_fold_touches_only_the_services_it_is_given():
    state = State(health={"api": {"x": HC_("x", 1, 0, False)}})
    services = [ServiceTargets("web", "blue", HealthConfig(fall=1), (b("a"),))]
    transitions = fold(state, services, {"web": [r("a", False)]})
    assert [t.describe() for t in transitions] == ["ejected a from web after 1 failed checks in a row"]
    assert state.health == {"api": {"x": HC_("x", 1, 0, False)},
                            "web": {"id-a": HC_("a", 1, 0, True)}}


# --- one pass: the report ------------------------------------------------------------------------------

def test_all_healthy_is_ok():
    w = standard_world()
    report = w.app().health()
    assert report.exit_code == OK
    assert report.nagios() == (
        "LBGEN OK - 2 services, 4/4 backends healthy | web_healthy=3;;;0;3 web_unhealthy=0;;;0;3 "
        "web_ejected=0;;;0;3 web_drift=0;;;0 api_healthy=1;;;0;1 api_unhealthy=0;;;0;1 api_ejected=0;;;0;1 "
        "api_drift=0;;;0\n"
        "web: OK, env blue, 3/3 healthy\n"
        "api: OK, env -, 1/1 healthy"
    )
    # Only the active env is checked, with each service's own path.
    checked = sorted(u for u in w.gets if ":8080/" in u)
    assert checked == sorted([f"http://{w.address(n)}:8080/health" for n in ("web-1", "web-2", "web-3")]
                             + [f"http://{w.address('api-1')}:8080/ping"])


def test_some_unhealthy_is_warning_with_one_line_per_unhealthy_backend():
    w = standard_world()
    w.answer("web-2", 503)
    w.answer("web-3", "timeout")
    report = w.app().health()
    assert report.exit_code == WARNING
    lines = report.nagios().splitlines()
    assert lines[0].startswith("LBGEN WARNING - 2 services, 2/4 backends healthy | web_healthy=1;;;0;3 "
                               "web_unhealthy=2;;;0;3 ")
    assert lines[1:] == [
        "web: WARNING, env blue, 1/3 healthy",
        f"web: web-2 ({w.address('web-2')}:8080) UNHEALTHY: HTTP 503 on /health",
        f"web: web-3 ({w.address('web-3')}:8080) UNHEALTHY: timeout after 1s",
        "api: OK, env -, 1/1 healthy",
    ]
    # Without --apply nothing is written and nothing reloads.
    assert w.state()["health"] == {} and w.reloads == 0


def test_a_service_without_a_healthy_backend_is_critical():
    w = standard_world()
    w.answer("api-1", "refused")
    w.answer("web-1", 500)
    report = w.app().health()
    assert report.exit_code == CRITICAL
    assert report.nagios().splitlines()[0].startswith(
        "LBGEN CRITICAL - api has no healthy backend; 2 services, 2/4 backends healthy | ")


def test_a_service_with_no_backends_at_all_is_critical():
    w = standard_world()
    w.engine.remove_container("api-1")
    report = w.app().health()
    assert report.exit_code == CRITICAL
    assert "api: no backends to route to in env -" in report.nagios().splitlines()


def test_service_option_checks_only_that_service():
    w = standard_world()
    w.answer("api-1", 503)
    report = w.app().health("web")
    assert report.exit_code == OK and [s.name for s in report.services] == ["web"]
    assert not [u for u in w.gets if "/ping" in u]


def test_json_report():
    w = standard_world()
    w.answer("web-2", 503)
    data = json.loads(w.app().health().to_json())
    assert data["status"] == "WARNING" and data["exit_code"] == 1 and data["error"] is None
    web = data["services"]["web"]
    assert (web["active_env"], web["healthy"], web["unhealthy"], web["ejected"], web["fail_open"]) == \
        ("blue", 2, 1, 0, False)
    assert web["backends"][1] == {
        "name": "web-2", "id": w.engine.get_container("web-2").id, "env": "blue", "address": w.address("web-2"),
        "port": 8080, "healthy": False, "detail": "HTTP 503 on /health", "ejected": False, "fails": 0, "passes": 0}
    assert data["services"]["api"]["backends"][0]["env"] is None


def test_prometheus_text():
    w = standard_world()
    w.answer("web-2", 503)
    report = w.app().health()
    report = HealthReport(report.services, checked_at=1700000000.5, took=0.25)
    text = report.prometheus()
    assert text.endswith("\n")
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == [
        "lbgen_check_status 1.0",
        "lbgen_check_timestamp_seconds 1.7000000005e+09",
        "lbgen_check_duration_seconds 0.25",
        'lbgen_service_status{service="web"} 1.0',
        'lbgen_service_status{service="api"} 0.0',
        'lbgen_service_backends{service="web",state="healthy"} 2.0',
        'lbgen_service_backends{service="web",state="unhealthy"} 1.0',
        'lbgen_service_backends{service="web",state="ejected"} 0.0',
        'lbgen_service_backends{service="api",state="healthy"} 1.0',
        'lbgen_service_backends{service="api",state="unhealthy"} 0.0',
        'lbgen_service_backends{service="api",state="ejected"} 0.0',
        'lbgen_backend_up{backend="web-1",env="blue",service="web"} 1.0',
        'lbgen_backend_up{backend="web-2",env="blue",service="web"} 0.0',
        'lbgen_backend_up{backend="web-3",env="blue",service="web"} 1.0',
        'lbgen_backend_up{backend="api-1",env="",service="api"} 1.0',
        'lbgen_backend_ejected{backend="web-1",env="blue",service="web"} 0.0',
        'lbgen_backend_ejected{backend="web-2",env="blue",service="web"} 0.0',
        'lbgen_backend_ejected{backend="web-3",env="blue",service="web"} 0.0',
        'lbgen_backend_ejected{backend="api-1",env="",service="api"} 0.0',
    ]
    assert "# TYPE lbgen_backend_up gauge" in text
    unknown = HealthReport.unknown("cannot reach the Docker daemon", checked_at=5.0).prometheus()
    assert "lbgen_check_status 3.0\n" in unknown and "lbgen_check_timestamp_seconds 5.0\n" in unknown


# --- --apply: hysteresis against the live config --------------------------------------------------------

def test_apply_ejects_after_fall_passes_and_readmits_after_rise():
    w = standard_world()
    w.app().apply()
    assert w.routed() == ["web-1", "web-2", "web-3", "api-1"]
    w.answer("web-2", 503)

    first = w.app().health(apply=True)  # fall=2: one failure is not enough
    assert first.exit_code == WARNING and not first.transitions
    assert w.routed() == ["web-1", "web-2", "web-3", "api-1"]

    second = w.app().health(apply=True)  # a fresh Lbgen: the counts come from the proxy, not from memory
    assert [t.describe() for t in second.transitions] == ["ejected web-2 from web after 2 failed checks in a row"]
    assert w.routed() == ["web-1", "web-3", "api-1"]
    assert second.applied["changed"] is True
    assert "web: WARNING, env blue, 2/3 healthy, 1 ejected" in second.nagios().splitlines()
    assert f"web: web-2 ({w.address('web-2')}:8080) UNHEALTHY: HTTP 503 on /health (ejected)" in second.nagios()
    web2 = w.engine.get_container("web-2").id
    assert w.state()["health"] == {"web": {web2: {"name": "web-2", "fails": 2, "passes": 0, "ejected": True}}}

    w.answer("web-2", 200)
    third = w.app().health(apply=True)  # rise=2: one pass is not enough
    assert third.exit_code == OK and w.routed() == ["web-1", "web-3", "api-1"]
    assert f"web: web-2 ({w.address('web-2')}:8080) healthy again (HTTP 200), ejected until 2 passed checks " \
           "in a row (1 so far)" in third.nagios()
    fourth = w.app().health(apply=True)
    assert [t.describe() for t in fourth.transitions] == ["re-admitted web-2 to web after 2 passed checks in a row"]
    assert w.routed() == ["web-1", "web-2", "web-3", "api-1"]
    assert w.state()["health"] == {}


def test_apply_never_empties_a_pool():
    w = standard_world()
    w.app().apply()
    for name in ("web-1", "web-2", "web-3"):
        w.answer(name, 503)
    for _ in range(3):
        report = w.app().health(apply=True)
    assert report.exit_code == CRITICAL
    assert w.routed() == ["web-1", "web-2", "web-3", "api-1"]
    web = report.to_dict()["services"]["web"]
    assert web["fail_open"] is True and web["ejected"] == 0
    assert "web: CRITICAL, env blue, 0/3 healthy, all kept (fail open)" in report.nagios().splitlines()
    # One recovers: after `rise` passes it is the pool, the others stay out.
    w.answer("web-1", 200)
    w.app().health(apply=True)
    report = w.app().health(apply=True)
    assert report.exit_code == WARNING
    assert w.routed() == ["web-1", "api-1"]


def test_a_backend_that_goes_away_loses_its_counts():
    w = standard_world()
    w.answer("web-2", 503)
    w.app().health(apply=True)
    assert list(w.state()["health"]["web"].values())[0]["name"] == "web-2"
    w.engine.remove_container("web-2")
    w.app().health(apply=True)
    assert w.state()["health"] == {}


def test_apply_that_cannot_take_the_lock_is_unknown_but_still_reports_the_checks():
    w = standard_world()
    w.answer("web-2", 503)
    app = w.app()
    holder = app.core.lock("switch web to green", wait=0)
    holder.acquire()
    report = w.app().health(apply=True, lock_wait=0)
    assert report.exit_code == UNKNOWN
    first = report.nagios().splitlines()[0]
    assert first.startswith("LBGEN UNKNOWN - --apply failed: another lbgen holds the lock on proxy proxy")
    assert "2 services, 3/4 backends healthy | web_healthy=2" in first
    assert w.state()["health"] == {}


def test_run_checks_is_concurrent_across_services():
    hang = 0.3

    class Checker:
        def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
            if backend.name.startswith("dead"):
                time.sleep(hang)
                return CheckResult(backend, False, f"timeout after {hang}s")
            return CheckResult(backend, True, "HTTP 200")

    services = []
    for s in range(4):  # 200 backends in 4 services, 20 of them black-holed
        backends = tuple(Backend(f"s{s}", None, f"{'dead' if i < 5 else 'ok'}-{s}-{i}", f"id{s}-{i}", "10.0.0.1", 80)
                         for i in range(50))
        services.append(ServiceTargets(f"s{s}", None, HealthConfig(timeout=hang), backends))
    started = time.monotonic()
    results = run_checks(services, Checker())
    elapsed = time.monotonic() - started
    assert [sum(not x.ok for x in results[f"s{s}"]) for s in range(4)] == [5, 5, 5, 5]
    assert [x.backend.name for x in results["s1"]][:6] == [f"dead-1-{i}" for i in range(5)] + ["ok-1-5"]
    # One at a time would be 20 * 0.3s = 6s; one service after another at least 4 * 0.3s.
    assert elapsed < 3 * hang, f"took {elapsed:.2f}s"


def test_a_batch_checker_checks_each_service_in_one_go_and_the_services_at_once():
    """Engine mode (lbgen.probe.EngineChecker): one exec per service, not one per backend, and all the
    services' execs in flight together (each waits at a barrier for the others)."""
    services = [ServiceTargets(f"s{s}", None, HealthConfig(), tuple(
        Backend(f"s{s}", None, f"b-{s}-{i}", f"id{s}-{i}", "10.0.0.1", 80) for i in range(3))) for s in range(4)]
    services.insert(2, ServiceTargets("empty", None, HealthConfig(), ()))
    together = threading.Barrier(4, timeout=10)
    batches: list[list[str]] = []

    class Batch:
        def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
            raise AssertionError(f"{backend.name} checked on its own")

        def check_many(self, backends, health: HealthConfig) -> list[CheckResult]:
            batches.append([b.name for b in backends])
            together.wait()
            return [CheckResult(b, not b.name.endswith("-0"), "HTTP 200") for b in backends]

    results = run_checks(services, Batch())
    assert sorted(batches) == [[f"b-{s}-{i}" for i in range(3)] for s in range(4)]
    assert list(results) == ["s0", "s1", "empty", "s2", "s3"] and results["empty"] == ()
    assert [[r.backend.name, r.ok] for r in results["s2"]] == [["b-2-0", False], ["b-2-1", True], ["b-2-2", True]]


# --- the textfile ----------------------------------------------------------------------------------------

def test_textfile_is_replaced_atomically(tmp_path):
    path = tmp_path / "lbgen.prom"
    path.write_text("old\n")
    report = HealthReport.unknown("cannot reach the Docker daemon", checked_at=5.0)
    seen = []
    real_rename = os.rename  # prometheus_client's write_to_textfile renames (os.replace on Windows)

    def spy(src, dst):
        seen.append((os.path.dirname(src), os.path.basename(src), open(src).read()))
        real_rename(src, dst)

    os.rename = spy
    try:
        report.write_textfile(path)
    finally:
        os.rename = real_rename
    assert path.read_text() == report.prometheus() and "lbgen_check_status 3.0\n" in path.read_text()
    (directory, name, content), = seen
    assert directory == str(tmp_path) and not name.endswith(".prom") and content == report.prometheus()
    assert sorted(os.listdir(tmp_path)) == ["lbgen.prom"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_textfile_in_a_missing_directory_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        HealthReport.unknown("x").write_textfile(tmp_path / "nope" / "lbgen.prom")
    assert os.listdir(tmp_path) == []


# --- the command -----------------------------------------------------------------------------------------

@pytest.fixture
def world_cli(monkeypatch, tmp_path):
    w = standard_world()
    monkeypatch.setattr("lbgen.cli_monitor._app", lambda ctx: w.app())
    return w


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_cli_exit_codes_follow_the_plugin_convention(world_cli):
    w = world_cli
    assert run("health").exit_code == 0
    w.answer("web-2", 503)
    result = run("health")
    assert result.exit_code == 1 and result.output.startswith("LBGEN WARNING - ")
    w.answer("api-1", 503)
    result = run("health", "--json")
    assert result.exit_code == 2 and json.loads(result.output)["status"] == "CRITICAL"


def test_cli_writes_the_textfile_and_applies(world_cli, tmp_path):
    w = world_cli
    w.answer("web-2", 503)
    path = tmp_path / "lbgen.prom"
    for _ in range(2):
        result = run("health", "--apply", "--textfile", str(path))
    assert result.exit_code == 1, result.output
    assert "ejected web-2 from web after 2 failed checks in a row" in result.stdout
    assert event("eject", service="web", backend="web-2", fails=2) in w.logs  # the log line, on stderr in real use
    assert 'lbgen_backend_ejected{backend="web-2",env="blue",service="web"} 1.0\n' in path.read_text()
    assert "web-2" not in w.routed()


def test_cli_unwritable_textfile_is_unknown(world_cli, tmp_path):
    result = run("health", "--textfile", str(tmp_path / "missing" / "lbgen.prom"))
    assert result.exit_code == 3
    assert result.output.startswith(f"LBGEN UNKNOWN - cannot write --textfile {tmp_path}/missing/lbgen.prom: ")


def test_cli_docker_unreachable_is_unknown_not_4(tmp_path):
    config = tmp_path / "lbgen.yaml"
    config.write_text(CONFIG)
    result = run("-c", str(config), "health", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.exit_code == 3
    assert result.output == (f"LBGEN UNKNOWN - cannot reach the Docker daemon at unix://{tmp_path}/no-docker.sock: "
                             "No such file or directory\n")
    result = run("-c", str(config), "health", "--json", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.exit_code == 3 and json.loads(result.output)["status"] == "UNKNOWN"


def test_cli_unknown_service_or_option_is_unknown(world_cli):
    result = run("health", "--service", "nope")
    assert (result.exit_code, result.output) == (3, "LBGEN UNKNOWN - no service 'nope' in lbgen.yaml "
                                                    "(services: web, api)\n")
    result = run("health", "--frobnicate")
    assert (result.exit_code, result.output) == (3, "LBGEN UNKNOWN - No such option '--frobnicate'.\n")


def test_cli_missing_config_is_unknown(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = run("-c", str(missing), "health")
    assert (result.exit_code, result.output) == (
        3, f"LBGEN UNKNOWN - {missing}: no such file (give --config PATH or set LBGEN_CONFIG)\n")


def test_checks_of_one_pass_overlap(monkeypatch):
    """The real HttpChecker path: concurrent gets, bounded by the service's timeout."""
    w = standard_world()
    barrier = threading.Barrier(3, timeout=2)
    real_get = w.get

    def get(url: str, timeout: float):
        if "/health" in url:
            barrier.wait()  # all three web checks must be in flight at once, or this times out
        return real_get(url, timeout)

    app = Lbgen(w.config, w.engine, get=get, clock=w.clock, sleep=w.clock.sleep, log=w.logs.append)
    assert app.health().exit_code == OK


def test_status_checks_the_backends_of_every_service_at_once():
    """As a health pass does: a backend that hangs in each of 1,000 services costs status one timeout, not
    one per service."""
    w = standard_world()
    barrier = threading.Barrier(5, timeout=2)  # web's four backends (blue and green) and api's one
    real_get = w.get

    def get(url: str, timeout: float):
        if not url.endswith("/lbgen/status"):  # web's checks ask /health, api's /ping
            barrier.wait()  # all five checks in flight at once, or this times out
        return real_get(url, timeout)

    app = Lbgen(w.config, w.engine, get=get, clock=w.clock, sleep=w.clock.sleep, log=w.logs.append)
    services = {s.name: [row.backend.name for row in s.backends] for s in app.status().services}
    assert services == {"web": ["web-1", "web-2", "web-3", "web-green-1"], "api": ["api-1"]}
