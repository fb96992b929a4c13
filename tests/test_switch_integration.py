"""`lbgen switch` / `rollback` / `status` / `history` against real proxies and backends: the gate, the
verified swap, state that lives with the proxy, the lock, and zero failed requests under load."""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from lbgen.errors import HealthGateFailed, LockHeld, NoBackends
from lbgen.render import parse_meta
from lbgen.state import ProxyLock
from scenario import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loadgen import Load  # noqa: E402

KINDS = ["nginx", "haproxy"]


@pytest.mark.parametrize("kind", KINDS)
def test_switch_and_rollback_under_load_fail_no_request(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    load = Load(s.url, workers=4, max_seconds=60).start()
    try:
        time.sleep(0.5)
        result = s.app().switch("green")
        assert (result.outcome, result.from_env, result.to_env) == ("switched", "blue", "green")
        time.sleep(0.5)
        assert s.envs_served() == {"green"}
        back = s.app().rollback()
        assert (back.outcome, back.from_env, back.to_env) == ("switched", "green", "blue")
        time.sleep(0.5)
    finally:
        load.stop()
    assert s.envs_served() == {"blue"}
    summary = load.summary()
    assert summary["failed"] == 0, summary
    assert summary["by_env"].get("green", 0) > 0 and summary["by_env"].get("blue", 0) > 0, summary
    history = s.app().history()
    assert [(h.from_env, h.to_env, h.outcome) for h in history] == [("green", "blue", "switched"),
                                                                   ("blue", "green", "switched")]
    assert {"time", "service", "host", "user", "duration", "forced"} <= set(history[0].to_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_an_unhealthy_env_is_refused_and_nothing_changes(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    sick = s.backends["green"][1]
    lab.wait_http(f"http://{lab.ip(sick, s.net)}:8080/admin/health?status=503")
    before = s.live()
    started = time.monotonic()
    with pytest.raises(HealthGateFailed) as info:
        s.app().switch("green", timeout=2.0)
    assert time.monotonic() - started < 6
    message = str(info.value)
    assert message.startswith("green not healthy after 2s (")
    assert f"{sick.name}: HTTP 503 on /health" in message and message.endswith("traffic stays on blue")
    assert info.value.exit_code == 5
    assert s.live() == before
    assert s.envs_served() == {"blue"}
    # --min-healthy lets one of two suffice.
    result = s.app().switch("green", timeout=3.0, min_healthy="1")
    assert result.outcome == "switched"
    assert s.envs_served() == {"green"}


def test_a_black_holed_backend_times_out_per_check_without_hanging(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", service_yaml="""\
        default_env: blue
        health: {path: /health, interval: 200ms, timeout: 500ms, rise: 2}
    """)
    s.app().apply()
    hole = s.backends["green"][0]
    lab.wait_http(f"http://{lab.ip(hole, s.net)}:8080/admin/blackhole?on=1")
    started = time.monotonic()
    with pytest.raises(HealthGateFailed, match=f"{hole.name}: timeout after 0.5s"):
        s.app().switch("green", timeout=3.0)
    assert time.monotonic() - started < 5


def test_a_missing_env_is_refused_naming_it(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    with pytest.raises(NoBackends, match="no backends of service web in env purple .envs present: blue, green."):
        s.app().switch("purple")


def test_a_docker_healthcheck_must_pass_too(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", green=0)
    s.app().apply()
    checked = s.add_backend("green", healthcheck=["CMD", "test", "-e", "/tmp/ready"])
    with pytest.raises(HealthGateFailed, match="docker health: starting"):
        s.app().switch("green", timeout=1.0)

    def ready_soon():
        time.sleep(0.8)
        checked.exec_run(["touch", "/tmp/ready"])

    threading.Thread(target=ready_soon).start()
    assert s.app().switch("green", timeout=10.0).outcome == "switched"
    assert s.envs_served() == {"green"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_lbgen_sees_the_same_record(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    s.app().switch("green")
    # Another lbgen (here: a fresh core object; in life, another host) sees the same state.
    status = s.app().status().to_dict()
    web = status["services"]["web"]
    assert (web["active_env"], web["previous_env"]) == ("green", "blue")
    assert web["last_switch"]["to"] == "green"
    assert status["proxy"]["in_sync"] and status["proxy"]["served_generation"] == status["proxy"]["live_generation"]
    routed = {b["env"] for b in web["backends"] if b["routed"]}
    assert routed == {"green"} and all(b["healthy"] for b in web["backends"])
    # The record is on the engine (tests/test_state_integration.py recreates the proxy): nothing to change.
    assert s.app().apply().changed is False
    assert parse_meta(s.live().decode()).active == {"web": "green"}
    assert s.app().status().to_dict()["services"]["web"]["active_env"] == "green"


def test_a_recreated_proxy_without_state_says_what_to_run(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", service_yaml="""\
        health: {path: /health, interval: 200ms, rise: 1}
    """)
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "apply"])
    assert result.exit_code == 3
    assert result.output == ("Error: service web has envs blue, green and no active env: set services.web.default_env, "
                             "or run `lbgen switch --service web --env ENV`\n")
    switched = CliRunner().invoke(cli, ["-c", str(s.config_path), "switch", "--env", "blue"])
    assert switched.exit_code == 0, switched.output
    assert s.envs_served() == {"blue"}


def test_a_held_lock_makes_the_second_switch_wait_then_fail_naming_the_holder(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    app = s.app()
    holder = app.core.lock("switch web to green (test)")
    holder.acquire()
    try:
        result = CliRunner().invoke(cli, ["-c", str(s.config_path), "switch", "--env", "green", "--lock-timeout", "1s"])
        assert result.exit_code == 7
        assert f"another lbgen holds the lock on proxy {s.proxy.name}: " in result.output
        assert f"pid {os.getpid()} (switch web to green (test), since" in result.output
    finally:
        holder.release()
    assert CliRunner().invoke(cli, ["-c", str(s.config_path), "switch", "--env", "green"]).exit_code == 0


def test_a_lock_left_by_a_dead_lbgen_is_recovered(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    app = s.app()
    app.core.proxy.info()
    dead = ProxyLock(app.core.engine, s.proxy.name, "switch (killed)")
    labels = dead._labels()
    labels["lbgen.lock.pid"] = "999999"  # no such process on this host
    labels["lbgen.lock.host"] = socket.gethostname()
    marker = app.core.engine.create_marker(dead.name, dead.image, labels)
    assert marker
    # A dead holder on another host is recovered once its lease has expired.
    result = s.app().switch("green", lock_wait=5)
    assert result.outcome == "switched"
    assert any(e.name == "lock-recovered" for e in s.logs)


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_switches_serialize_and_state_matches_live(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1)
    s.app().apply()
    load = Load(s.url, workers=2, max_seconds=90).start()
    outcomes: list[str] = []

    def run(env: str) -> None:
        try:
            outcomes.append(s.app(log=lambda line: None).switch(env, lock_wait=60).outcome)
        except LockHeld:
            outcomes.append("lock-held")

    threads = [threading.Thread(target=run, args=("green" if i % 2 == 0 else "blue",)) for i in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        load.stop()
    assert len(outcomes) == 6 and set(outcomes) <= {"switched", "unchanged", "lock-held"}
    live_active = parse_meta(s.live().decode()).active["web"]
    status = s.app().status().to_dict()
    assert status["services"]["web"]["active_env"] == live_active
    assert status["proxy"]["served_generation"] == status["proxy"]["live_generation"]
    assert s.envs_served() == {live_active}
    assert load.failed == 0, load.summary()


def test_cli_switch_json_dry_run_status_and_history(lab, tmp_path):
    s = Scenario(lab, tmp_path, "haproxy")
    runner = CliRunner()
    c = ["-c", str(s.config_path)]
    assert runner.invoke(cli, c + ["apply"]).exit_code == 0
    before = s.live()
    dry = runner.invoke(cli, c + ["switch", "--env", "green", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("plan: service=web from=blue to=green\ngate: 2/2 required healthy now\n--- live\n")
    assert s.live() == before
    result = runner.invoke(cli, c + ["switch", "--env", "green", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["outcome"], data["from_env"], data["to_env"]) == ("switched", "blue", "green")
    assert set(data["timings"]) == {"connect", "lock", "reconcile", "discover", "gate", "render", "deliver", "validate",
                                    "reload", "verify", "record", "total"}
    assert data["gate"]["passed"] and data["gate"]["failing"] == []
    status = json.loads(runner.invoke(cli, c + ["status", "--json"]).stdout)
    assert status["services"]["web"]["active_env"] == "green"
    assert status["services"]["web"]["previous_env"] == "blue"
    history = json.loads(runner.invoke(cli, c + ["history", "--json"]).stdout)
    assert [(h["from"], h["to"]) for h in history] == [("blue", "green")]
    text = runner.invoke(cli, c + ["history"]).stdout
    assert " web blue -> green switched " in text
    forced = runner.invoke(cli, c + ["rollback", "--force"])
    assert forced.exit_code == 0 and "warning: --force" in forced.stderr


def test_stop_old_drains_then_stops_the_previous_env(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "switch", "--env", "green", "--stop-old",
                                      "--drain", "500ms"])
    assert result.exit_code == 0, result.output
    for c in s.backends["blue"]:
        c.reload()
        assert c.status == "exited"
    for c in s.backends["green"]:
        c.reload()
        assert c.status == "running"
