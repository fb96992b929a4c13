"""`lbgen health` on a real engine with real nginx and HAProxy: the monitoring-plugin exit codes, `--apply`
ejecting and re-admitting with hysteresis, never emptying a pool, concurrent checks, the textfile."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from lbgen.holder import Holder
from scenario import Scenario

KINDS = ["nginx", "haproxy"]
SERVICE = """\
    default_env: blue
    health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}
"""


def health(s: Scenario, *args: str, env: dict | None = None) -> Any:
    return CliRunner().invoke(cli, ["-c", str(s.config_path), "health", *args], env=env)


def steer(s: Scenario, backend: Any, status: int) -> None:
    s.lab.wait_http(f"http://{s.lab.ip(backend, s.net)}:8080/admin/health?status={status}", timeout=5)


def endpoint(s: Scenario, backend: Any) -> bytes:
    return f"{s.lab.ip(backend, s.net)}:8080".encode()


def settles_on(s: Scenario, names: set[str], n: int = 12, timeout: float = 5.0) -> None:
    """Wait until `n` requests in a row through the proxy are answered by exactly `names`, each of them.
    (Right after a reload an old nginx worker may still take a connection or two with the old config.)"""
    deadline = time.monotonic() + timeout
    window: list[str] = []
    while True:
        body = s.lab.wait_http(s.url, timeout=5)
        window = (window + [body.split("name=")[1].strip()])[-n:]
        if len(window) == n and set(window) == names:
            return
        assert time.monotonic() < deadline, f"the proxy does not settle on {sorted(names)}: last {window}"


def test_exit_codes_follow_the_monitoring_plugin_convention(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=3, green=1, service_yaml=SERVICE)
    s.app().apply()
    s.app().switch("blue")  # on record: an assumed active env is a WARNING of its own (tests/test_state_*)
    b1, b2, b3 = s.backends["blue"]

    result = health(s)
    assert result.exit_code == 0, result.stdout
    assert result.stdout == ("LBGEN OK - 1 service, 3/3 backends healthy | web_healthy=3;;;0;3 web_unhealthy=0;;;0;3 "
                             "web_ejected=0;;;0;3 web_drift=0;;;0\nweb: OK, env blue, 3/3 healthy\n")

    steer(s, b2, 503)
    result = health(s)
    assert result.exit_code == 1, result.stdout
    assert result.stdout.splitlines()[0].startswith("LBGEN WARNING - 1 service, 2/3 backends healthy | web_healthy=2;")
    assert f"web: {b2.name} ({lab.ip(b2, s.net)}:8080) UNHEALTHY: HTTP 503 on /health" in result.stdout

    steer(s, b1, 500)
    steer(s, b3, 404)
    result = health(s, "--json")
    assert result.exit_code == 2, result.stdout
    data = json.loads(result.stdout)
    web = data["services"]["web"]
    assert (data["status"], web["healthy"], web["unhealthy"]) == ("CRITICAL", 0, 3)

    result = health(s, env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert (result.exit_code, result.stdout) == (3, f"LBGEN UNKNOWN - cannot reach the Docker daemon at "
                                                    f"unix://{tmp_path}/nothing.sock: No such file or directory\n")

    s.write_config(service_yaml="default_env: blue\nhealth: {timeout: soon}\n")
    result = health(s)
    assert result.exit_code == 3 and result.stdout.startswith("LBGEN UNKNOWN - ")
    assert "services.web.health.timeout: 'soon' is not a duration" in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_apply_ejects_and_readmits_with_hysteresis(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=3, green=0, service_yaml=SERVICE)
    s.app().apply()
    b1, b2, b3 = s.backends["blue"]
    steer(s, b2, 503)

    first = health(s, "--apply")
    assert first.exit_code == 1, first.stdout
    assert endpoint(s, b2) in s.live(), "fall=2: one failed pass must not eject"

    second = health(s, "--apply")
    assert second.exit_code == 1
    assert f"ejected {b2.name} from web after 2 failed checks in a row" in second.stdout
    assert endpoint(s, b2) not in s.live() and endpoint(s, b1) in s.live() and endpoint(s, b3) in s.live()
    settles_on(s, {b1.name, b3.name})

    steer(s, b2, 200)
    third = health(s, "--apply")
    assert third.exit_code == 0
    assert endpoint(s, b2) not in s.live(), "rise=2: one good pass must not re-admit"
    fourth = health(s, "--apply", "--json")
    data = json.loads(fourth.stdout)
    assert data["transitions"] == [{"service": "web", "backend": b2.name, "id": b2.id, "action": "readmit", "count": 2}]
    assert endpoint(s, b2) in s.live()
    settles_on(s, {b1.name, b2.name, b3.name})


def test_counts_live_with_the_proxy_so_any_host_agrees(lab, tmp_path):
    """Each run is a fresh process as far as lbgen is concerned (a new Lbgen): the counts come from the record
    on the engine (the state holder), which is what makes cron runs from different hosts add up."""
    s = Scenario(lab, tmp_path, "nginx", blue=2, green=0, service_yaml=SERVICE)
    s.app().apply()
    b1, b2 = s.backends["blue"]
    steer(s, b1, 503)
    s.app().health(apply=True)
    state = json.loads(Holder(s.app().core.engine, s.proxy.name).read().body)
    assert state["health"] == {"web": {b1.id: {"name": b1.name, "fails": 1, "passes": 0, "ejected": False}}}
    report = s.app().health(apply=True)
    assert [t.describe() for t in report.transitions] == [f"ejected {b1.name} from web after 2 failed checks in a row"]


def test_apply_never_empties_a_pool(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=2, green=0, service_yaml=SERVICE)
    s.app().apply()
    for backend in s.backends["blue"]:
        steer(s, backend, 503)
    for _ in range(3):
        result = health(s, "--apply", "--json")
    assert result.exit_code == 2
    web = json.loads(result.stdout)["services"]["web"]
    assert web["fail_open"] is True and web["ejected"] == 0 and web["healthy"] == 0
    for backend in s.backends["blue"]:
        assert endpoint(s, backend) in s.live()
    settles_on(s, {b.name for b in s.backends["blue"]})  # their / still answers: traffic flows


def test_a_pass_takes_about_one_timeout_however_many_backends_hang(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=6, green=0, service_yaml=SERVICE)
    s.app().apply()
    hung = s.backends["blue"][:3]
    for backend in hung:
        lab.wait_http(f"http://{lab.ip(backend, s.net)}:8080/admin/blackhole?on=1", timeout=5)
    started = time.monotonic()
    result = health(s, "--json")
    elapsed = time.monotonic() - started
    data = json.loads(result.stdout)
    assert result.exit_code == 1
    details = {b["name"]: b["detail"] for b in data["services"]["web"]["backends"]}
    assert {details[b.name] for b in hung} == {"timeout after 1s"}
    # Three 1s timeouts one after another would take over 3s.
    assert elapsed < 2.5, f"a pass with 3 black-holed backends took {elapsed:.2f}s"


def test_textfile_for_node_exporter(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=2, green=0, service_yaml=SERVICE)
    s.app().apply()
    b1, b2 = s.backends["blue"]
    steer(s, b2, 503)
    path = tmp_path / "lbgen.prom"
    result = health(s, "--textfile", str(path))
    assert result.exit_code == 1
    text = path.read_text()
    assert f'lbgen_backend_up{{backend="{b1.name}",env="blue",service="web"}} 1.0\n' in text
    assert f'lbgen_backend_up{{backend="{b2.name}",env="blue",service="web"}} 0.0\n' in text
    assert 'lbgen_service_backends{service="web",state="unhealthy"} 1.0\n' in text
    assert "lbgen_check_status 1.0\n" in text
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".prom", ".tmp"))) == ["lbgen.prom"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_paused_backend_still_routed_is_a_warning_until_apply(lab, tmp_path, kind):
    """The live config still sends a share of the traffic to a `docker pause`d container: discovery alone
    would say all is well; health compares with what the proxy routes."""
    s = Scenario(lab, tmp_path, kind, blue=3, green=0, service_yaml=SERVICE)
    s.app().apply()
    paused = s.backends["blue"][1]
    paused.pause()
    try:
        result = health(s)
        assert result.exit_code == 1, result.stdout
        lines = result.stdout.splitlines()
        assert lines[0].startswith("LBGEN WARNING - 1 service, 2/2 backends healthy, live config differs from what "
                                   "runs for 1 backend | ")
        assert f"web: DRIFT {paused.name} is routed but not running (run lbgen apply)" in lines
        status = json.loads(CliRunner().invoke(cli, ["-c", str(s.config_path), "status", "--json"]).stdout)
        assert status["services"]["web"]["drift"] == [
            {"backend": paused.name, "kind": "not-routable", "detail": f"{paused.name} is routed but not running"}]
        applied = health(s, "--apply")
        assert applied.exit_code == 0, applied.stdout
        assert "DRIFT" not in applied.stdout
        others = {b.name for b in s.backends["blue"]} - {paused.name}
        settles_on(s, others)
    finally:
        paused.unpause()
