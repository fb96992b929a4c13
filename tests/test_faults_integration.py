"""Faults, each on a real Docker engine with real nginx / HAProxy containers, through the real CLI
(`python -m lbgen` in its own process, so a kill or an exit is the real thing):

| fault                                                   | what must hold                                   |
| the Docker daemon is unreachable, or stops mid-command  | exit 4, one line; nothing live changes           |
| the proxy container is stopped or removed mid-switch    | clear error; recorded state == served once back  |
| lbgen is SIGKILLed at each step of a switch             | live is entirely old or new; next command recovers|
| the proxy rejects the rendered config (user template)   | exit 3; previous config live, byte-identical     |
| a backend black-holes its health check during the gate  | each check times out, named; no hang past timeout|
| 10 `lbgen switch` at once, alternating blue/green       | serialized (or exit 7); recorded == live; 0 fails|
| the config's filesystem is read-only                    | clear error; previous config still live          |

The daemon itself is never stopped: "stops mid-command" is an Engine that raises DockerUnavailable from
the Nth Docker API call on, swept across every call a switch makes. Figures (kill points, concurrent
runs, requests and failures under load) are printed at the end of the module.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import docker
import pytest

from testutil import report_figures
from lbgen.render import parse_meta
from scenario import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loadgen import Load  # noqa: E402

FIGURES: Counter[str] = Counter()
MESSAGES: dict[str, str] = {}  # the first error line each fault showed, printed with the figures
FAST_GATE = "health: {path: /health, interval: 100ms, timeout: 1s, rise: 1, fall: 2}\n"


@pytest.fixture(scope="module", autouse=True)
def figures(request):
    yield
    report_figures(request, "faults: " + ", ".join(f"{v} {k}" for k, v in sorted(FIGURES.items())) + "".join(
        f"\n  {fault}: {message}" for fault, message in sorted(MESSAGES.items())))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBGEN_")}
    env.update(extra)
    return env


def lbgen(s: Scenario, *args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    """`python -m lbgen -c <the scenario's lbgen.yaml> ARGS` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "lbgen", "-c", str(s.config_path), *args], capture_output=True,
                          text=True, timeout=timeout, env=env or clean_env())


def start_lbgen(s: Scenario, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lbgen", "-c", str(s.config_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or clean_env())


def finish(run: subprocess.Popen, timeout: float = 90) -> subprocess.CompletedProcess:
    out, err = run.communicate(timeout=timeout)
    return subprocess.CompletedProcess(run.args, run.returncode, out, err)


def one_error(result: Any, code: int, *needles: str) -> str:
    """The run exited `code` with exactly one `Error: ...` line on stderr (containing each needle)."""
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert result.returncode == code, (result.returncode, stderr)
    assert len(errors) == 1 and stderr.endswith(errors[0] + "\n"), stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def served_generation(s: Scenario) -> str | None:
    return s.app(log=lambda line: None).core.proxy.served().generation


def assert_consistent(s: Scenario, env: str) -> None:
    """What lbgen records, what is on the proxy's disk and what the proxy serves all say `env`."""
    live = s.live().decode()
    meta = parse_meta(live)
    assert meta is not None and meta.active == {"web": env}
    status = s.app(log=lambda line: None).status().to_dict()
    assert status["services"]["web"]["active_env"] == env
    assert status["proxy"]["served_generation"] == status["proxy"]["live_generation"] == meta.generation
    assert status["proxy"]["in_sync"], status["proxy"]
    state = s.app().core.store.load()
    assert state.recorded_active.get("web", env) == env, state.recorded_active
    assert s.envs_served() == {env}


def rendered_for(s: Scenario, env: str) -> str:
    app = s.app(log=lambda line: None)
    return app.core.desired(app.core.read_world(), {"web": env}).text


# --- the Docker daemon ------------------------------------------------------------------------------------

def test_an_unreachable_daemon_is_exit_4_in_one_line_and_nothing_changes(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=1, service_yaml="default_env: blue\n" + FAST_GATE)
    s.app().apply()
    before = s.live()
    for host in ("unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"):
        for args in (["apply"], ["switch", "--env", "green"], ["rollback"], ["status"], ["discover"], ["history"]):
            result = lbgen(s, *args, env=clean_env(DOCKER_HOST=host))
            one_error(result, 4, f"cannot reach the Docker daemon at {host}: ")
            assert result.stdout == ""
            FIGURES["unreachable-daemon runs"] += 1
    assert s.live() == before
    assert s.envs_served() == {"blue"}


# An lbgen whose Docker daemon goes away at its Nth API call (before the call, or after it ran but before
# its answer arrived) and stays away; the count of calls a whole run made is written to LBGEN_TEST_CALLS.
FLAKY_LBGEN = r"""
import os, sys
from lbgen import docker_engine
from lbgen.errors import DockerUnavailable
fail_at, mode = int(sys.argv[1]), sys.argv[2]
state = {"calls": 0, "down": False}

def wrap(method):
    def call(self, *args, **kwargs):
        def gone():
            state["down"] = True
            return DockerUnavailable(f"cannot reach the Docker daemon at {self.where}: Connection refused")
        if state["down"]:
            raise gone()
        state["calls"] += 1
        if state["calls"] == fail_at and mode == "stop-proxy":  # the proxy goes away, the daemon stays
            import docker
            docker.from_env().api.stop(os.environ["LBGEN_TEST_PROXY"], timeout=1)
        if state["calls"] == fail_at and mode == "before":
            raise gone()
        result = method(self, *args, **kwargs)
        if state["calls"] == fail_at and mode == "after":
            raise gone()
        return result
    return call

for name in ("ping", "list_containers", "get_container", "exec", "put_file", "read_file", "read_files", "signal",
             "stop_container", "create_marker", "remove_container"):
    setattr(docker_engine.DockerEngine, name, wrap(getattr(docker_engine.DockerEngine, name)))
try:
    from lbgen.cli import main
    main(sys.argv[3:])
finally:
    with open(os.environ["LBGEN_TEST_CALLS"], "w") as f:
        f.write(str(state["calls"]))
"""


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_a_daemon_that_stops_mid_switch_is_exit_4_and_the_proxy_is_old_or_new(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1, service_yaml="default_env: blue\n" + FAST_GATE)
    s.app().apply()
    old, new = s.live().decode(), rendered_for(s, "green")
    calls_file = tmp_path / "calls"

    live_for = {"blue": old, "green": new}

    def flaky_switch(fail_at: int, mode: str, env: str = "green") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", FLAKY_LBGEN, str(fail_at), mode, "-c", str(s.config_path),
                               "switch", "--env", env, "--lock-timeout", "10s"], capture_output=True, text=True,
                              timeout=60, env=clean_env(LBGEN_TEST_CALLS=str(calls_file)))

    whole = flaky_switch(10**6, "before")
    assert whole.returncode == 0, whole.stderr
    total = int(calls_file.read_text())
    assert 10 <= total <= 80, total
    outcomes: Counter[str] = Counter()
    # Every call, with the daemon gone before it; the calls that change something, also gone after them.
    # Each point switches away from the env the point before it settled on (green -> blue, blue -> green,
    # ...): a switch makes the same calls either way, and no extra switch back is needed between points.
    points = [(n, "before") for n in range(1, total + 1)] + [(n, "after") for n in range(1, total + 1, 2)]
    to = "blue"
    for fail_at, mode in points:
        start = "green" if to == "blue" else "blue"
        result = flaky_switch(fail_at, mode, to)
        if result.returncode == 0:  # the daemon went away after the last call that mattered
            outcomes["completed"] += 1
        else:
            MESSAGES.setdefault("daemon gone mid-switch", one_error(result, 4, "Docker daemon", "Connection refused"))
            outcomes["exit 4"] += 1
        live = s.live().decode()
        assert live in (old, new), f"{mode} call {fail_at}: the live config is neither the old nor the new one"
        outcomes["live old" if live == live_for[start] else "live new"] += 1
        # The daemon is back: the next switch recovers the lock of the dead lbgen and settles the proxy.
        again = s.app(log=lambda line: None).switch(to, lock_wait=15)
        assert again.outcome in ("switched", "unchanged")
        assert_consistent(s, to)
        to = start
    FIGURES[f"daemon-gone points ({kind})"] += len(points)
    for k, v in outcomes.items():
        FIGURES[f"daemon gone: {k}"] += v
    assert outcomes["exit 4"] >= len(points) - 4 and outcomes["live old"] and outcomes["live new"], outcomes


# --- the proxy container goes away ------------------------------------------------------------------------

SLOW_GATE = "default_env: blue\nhealth: {path: /health, interval: 300ms, timeout: 1s, rise: 3, fall: 2}\n"


def wait_for_lock(lab: Any, s: Scenario) -> None:
    """Until a switch holds the proxy's lock, i.e. it has started its gate."""
    name = "lbgen-lock-" + s.proxy.name
    lab.wait_for(lambda: bool(lab.api.containers(all=True, filters={"name": name})), timeout=20,
                 what="the switch to take the lock", interval=0.02)


def wait_proxy_up(lab: Any, s: Scenario) -> None:
    if s.kind == "nginx":
        lab.wait_for(lambda: s.proxy.exec_run(["test", "-s", "/run/nginx.pid"]).exit_code == 0, timeout=10,
                     what="nginx to start")
    lab.wait_http(f"http://{s.proxy_ip}:9180/lbgen/status", timeout=10)


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_a_proxy_stopped_mid_switch_is_a_clear_error_and_state_matches_once_it_is_back(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1, service_yaml=SLOW_GATE)
    s.app().apply()
    before = s.live()
    switch = start_lbgen(s, "switch", "--env", "green", "--timeout", "20s")
    wait_for_lock(lab, s)
    s.proxy.stop(timeout=2)
    MESSAGES.setdefault(f"proxy stopped ({kind})",
                        one_error(finish(switch), 4, f"container {s.proxy.name} is not running"))
    # While it is down, every command says so in one line.
    one_error(lbgen(s, "status"), 4, f"proxy container {s.proxy.name} is not running")
    s.proxy.start()
    wait_proxy_up(lab, s)
    assert s.live() == before
    assert_consistent(s, "blue")
    assert lbgen(s, "switch", "--env", "green").returncode == 0
    assert_consistent(s, "green")
    FIGURES["proxy stopped mid-switch"] += 1


def test_a_proxy_removed_mid_switch_is_a_clear_error_and_a_new_one_is_set_up_consistently(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=1, service_yaml=SLOW_GATE)
    s.app().apply()
    switch = start_lbgen(s, "switch", "--env", "green", "--timeout", "20s")
    wait_for_lock(lab, s)
    name = s.proxy.name
    for attempt in range(3):  # the engine may trip over its own overlay2 clean-up under load: once more
        try:
            s.proxy.remove(force=True)
            break
        except docker.errors.APIError as e:
            if attempt == 2 or "directory not empty" not in str(e):
                raise
            time.sleep(0.5)
    # Whichever call the switch was in: the container is gone ("does not exist") or still being removed.
    message = one_error(finish(switch), 4, name)
    assert any(words in message for words in ("does not exist", "is not running", "is being removed")), message
    MESSAGES.setdefault("proxy removed", message)
    one_error(lbgen(s, "apply"), 4, f"container {name} does not exist")
    # Back: a new proxy under the same name. The record is on the engine, and the switch never got to record
    # green: blue (default_env, loudly assumed) it is.
    s.proxy = lab.nginx_proxy(s.net, name=name[len(lab.prefix):])
    assert lbgen(s, "apply").returncode == 0
    assert_consistent(s, "blue")
    assert lbgen(s, "switch", "--env", "green").returncode == 0
    assert_consistent(s, "green")
    FIGURES["proxy removed mid-switch"] += 1


def test_a_proxy_stopped_at_each_step_of_a_switch_is_back_consistent(lab, tmp_path):
    """The proxy container is stopped just before each Docker API call a switch makes, then started again."""
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=1, service_yaml="default_env: blue\n" + FAST_GATE)
    s.app().apply()
    old, new = s.live().decode(), rendered_for(s, "green")
    calls_file = tmp_path / "calls"

    live_for = {"blue": old, "green": new}

    def switch_stopping_the_proxy(at: int, env: str = "green") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", FLAKY_LBGEN, str(at), "stop-proxy", "-c", str(s.config_path),
                               "switch", "--env", env, "--lock-timeout", "10s"], capture_output=True, text=True,
                              timeout=60, env=clean_env(LBGEN_TEST_CALLS=str(calls_file), LBGEN_TEST_PROXY=s.proxy.id))

    assert switch_stopping_the_proxy(10**6).returncode == 0
    total = int(calls_file.read_text())
    seen: Counter[str] = Counter()
    # As in the daemon sweep: each point switches away from the env the point before it settled on.
    to = "blue"
    for at in range(1, total + 1):
        start = "green" if to == "blue" else "blue"
        result = switch_stopping_the_proxy(at, to)
        if result.returncode == 0:
            seen["completed"] += 1
        else:
            MESSAGES.setdefault("proxy stopped at a step", one_error(result, 4, f"{s.proxy.name} is not running"))
            seen["exit 4"] += 1
        s.proxy.start()
        wait_proxy_up(lab, s)
        live = s.live().decode()
        assert live in (old, new), f"proxy stopped before call {at}: the live config is neither old nor new"
        seen["back with old" if live == live_for[start] else "back with new"] += 1
        # Back: the record wins. A switch cut off before its record is undone (status brings the proxy in
        # line with the record); one cut off after it is live. Either way status, disk and proxy agree...
        status = s.app(log=lambda line: None).status().to_dict()
        assert status["proxy"]["served_generation"] == status["proxy"]["live_generation"]
        assert status["services"]["web"]["active_env_recorded"]
        assert status["services"]["web"]["active_env"] == parse_meta(s.live().decode()).active["web"]
        # ...and the next switch completes the history of one whose record was cut off.
        assert s.app(log=lambda line: None).switch(to, lock_wait=15).outcome in ("switched", "unchanged")
        assert_consistent(s, to)
        assert [h.to_env for h in s.app().history()][:1] == [to]
        to = start
    FIGURES["proxy-stopped points"] += total
    for k, v in seen.items():
        FIGURES[f"proxy stopped: {k}"] += v
    assert seen["exit 4"] and seen["back with old"] and seen["back with new"], seen


# --- lbgen killed ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,points", [("nginx", 14), ("haproxy", 8)])
def test_lbgen_killed_at_any_moment_leaves_old_or_new_and_the_next_command_recovers(lab, tmp_path, kind, points):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1, service_yaml="default_env: blue\n"
                 "health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}\n")
    s.app().apply()
    old, new = s.live().decode(), rendered_for(s, "green")
    generations = {parse_meta(old).generation, parse_meta(new).generation}
    started = time.monotonic()
    assert lbgen(s, "switch", "--env", "green").returncode == 0
    whole = time.monotonic() - started
    assert s.app().switch("blue").outcome == "switched"
    # From before Python has started to after the switch has finished.
    delays = [0.0] + [0.2 + (whole - 0.1) * i / (points - 2) for i in range(points - 1)]
    seen: Counter[str] = Counter()
    for delay in delays:
        switch = start_lbgen(s, "switch", "--env", "green")
        time.sleep(delay)
        switch.kill()
        switch.wait(timeout=10)
        live = s.live().decode()
        assert live in (old, new), f"killed after {delay:.2f}s: the live config is neither old nor new"
        assert served_generation(s) in generations
        seen["left old" if live == old else "left new"] += 1
        logs: list = []
        again = s.app(log=logs.append).switch("green", lock_wait=15)
        assert again.outcome in ("switched", "unchanged")
        seen["stale lock recovered"] += any(e.name == "lock-recovered" for e in logs)
        seen["settled a half-done swap"] += any("interrupted switch" in note or "reloaded" in note
                                                for note in again.notes)
        assert_consistent(s, "green")
        assert s.app().switch("blue", lock_wait=15).outcome == "switched"
    FIGURES[f"SIGKILL points ({kind})"] += len(delays)
    for k, v in seen.items():
        FIGURES[f"SIGKILL {k}"] += v
    assert seen["left old"] and seen["left new"] and seen["stale lock recovered"], seen


# --- the proxy rejects the config -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_a_config_the_proxy_rejects_is_exit_3_and_the_previous_one_stays_byte_identical(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=1, green=1, service_yaml="default_env: blue\n" + FAST_GATE)
    s.app().apply()
    before, inode = s.live(), s.inode()
    templates = tmp_path / "templates"
    templates.mkdir()
    name = "nginx.conf.j2" if kind == "nginx" else "haproxy.cfg.j2"
    builtin = (Path(__file__).resolve().parents[1] / "templates" / name).read_text()
    (templates / name).write_text(builtin + "\nthis_is_not_a_directive on;\n")
    s.write_config(service_yaml="default_env: blue\n" + FAST_GATE, top_yaml=f"templates_dir: {templates}\n")
    load = Load(s.url, workers=2, max_seconds=60).start()
    try:
        for args in (["apply"], ["switch", "--env", "green"]):
            MESSAGES.setdefault(f"rejected ({kind})", one_error(
                lbgen(s, *args), 3, f"{kind} rejected the rendered config: ", "this_is_not_a_directive",
                "the previous config is still live"))
        (templates / name).write_text(builtin.replace("{% endfor %}", "{% endfor", 1))  # Jinja cannot parse it
        MESSAGES.setdefault("broken template", one_error(lbgen(s, "apply"), 3, f"template {name} line "))
        time.sleep(0.3)
    finally:
        load.stop()
    assert s.live() == before
    if kind == "haproxy":  # validated beside the live file, never swapped in (nginx: swapped back)
        assert s.inode() == inode
    assert load.sent > 0 and load.failed == 0, load.summary()
    assert s.envs_served() == {"blue"}
    listing = s.proxy.exec_run(["ls", "-a", str(Path(s.config_file).parent)]).output.decode()
    assert ".lbgen-new" not in listing and ".lbgen-prev" not in listing
    assert s.app().history() == []
    FIGURES["rejected-config requests"] += load.sent
    FIGURES["rejected-config failed requests"] += load.failed


# --- a backend that never answers -------------------------------------------------------------------------

def test_a_black_holed_backend_fails_the_gate_by_name_within_the_timeout(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", service_yaml="default_env: blue\n"
                 "health: {path: /health, interval: 200ms, timeout: 500ms, rise: 2}\n")
    s.app().apply()
    before = s.live()
    hole = s.backends["green"][0]
    lab.wait_http(f"http://{lab.ip(hole, s.net)}:8080/admin/blackhole?on=1")
    started = time.monotonic()
    base = time.monotonic()
    assert lbgen(s, "--version").returncode == 0
    python = time.monotonic() - base  # what starting the program costs, not the gate
    for timeout, health_timeout in (("3s", "500ms"), ("2s", "10s")):
        s.write_config(service_yaml="default_env: blue\n"
                       f"health: {{path: /health, interval: 200ms, timeout: {health_timeout}, rise: 2}}\n")
        started = time.monotonic()
        result = lbgen(s, "switch", "--env", "green", "--timeout", timeout)
        took = time.monotonic() - started
        line = one_error(result, 5, "green not healthy after ", f"{hole.name}: timeout after ", "traffic stays on blue")
        MESSAGES[f"black hole (--timeout {timeout}, health timeout {health_timeout}, took {took:.1f}s)"] = line
        if health_timeout == "500ms":  # the healthy one had time to pass its checks: it is not blamed
            assert s.backends["green"][1].name not in line
        limit = float(timeout[:-1])
        assert took < limit + python + 2.5, f"--timeout {timeout} with health timeout {health_timeout}: took {took:.1f}s"
        FIGURES["black-hole gate runs"] += 1
    assert s.live() == before


# --- many switches at once --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_ten_concurrent_switches_serialize_and_no_request_fails(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=2, green=2, service_yaml="default_env: blue\n" + FAST_GATE)
    s.app().apply()
    load = Load(s.url, workers=4, max_seconds=120).start()
    try:
        time.sleep(0.3)
        runs = [start_lbgen(s, "switch", "--env", "green" if i % 2 == 0 else "blue", "--lock-timeout", "90s")
                for i in range(10)]
        results = []
        for run in runs:
            out, err = run.communicate(timeout=150)
            results.append((run.returncode, out, err))
        time.sleep(0.5)
    finally:
        load.stop()
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {0, 7}, results
    for code, out, err in results:
        assert "Traceback" not in err
        if code == 7:
            assert err.startswith("Error: another lbgen holds the lock")
    switched = sum(out.startswith("switched ") for _, out, _ in results)
    unchanged = sum(out.startswith("unchanged ") for _, out, _ in results)
    assert switched + unchanged == codes[0]
    # Serialized: each recorded switch starts from where the one before it ended.
    history = [h for h in reversed(s.app().history()) if h.outcome.value == "switched"]
    assert len(history) == switched
    assert all(a.to_env == b.from_env for a, b in zip(history, history[1:])), history
    final = parse_meta(s.live().decode()).active["web"]
    assert_consistent(s, final)
    assert load.failed == 0, load.summary()
    FIGURES["concurrent switch runs"] += len(results)
    FIGURES["concurrent: switched"] += switched
    FIGURES["concurrent: unchanged"] += unchanged
    FIGURES["concurrent: exit 7"] += codes[7]
    FIGURES["concurrent: requests"] += load.sent
    FIGURES["concurrent: failed requests"] += load.failed


# --- the config cannot be written -------------------------------------------------------------------------

def test_a_read_only_config_filesystem_is_a_clear_error_and_the_previous_config_stays_live(lab, tmp_path):
    """The config directory is a volume mounted read-only, the container's root filesystem read-only too."""
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=1, service_yaml="default_env: blue\n" + FAST_GATE)
    volume = lab.prefix + f"confd-{os.getpid()}-{time.monotonic_ns()}"
    lab.api.create_volume(volume, labels=dict(lab.labels))
    created: list[str] = []

    def proxy(read_only: bool) -> Any:
        host_config = lab.api.create_host_config(
            network_mode=s.net, read_only=read_only,
            binds={volume: {"bind": "/etc/nginx/conf.d", "mode": "ro" if read_only else "rw"}},
            tmpfs={"/run": "", "/var/lib/nginx": "", "/var/log/nginx": "", "/var/lib/lbgen": "", "/tmp": ""}
            if read_only else None)
        container = lab.api.create_container(lab.image, command=["nginx", "-g", "daemon off;"],
                                             name=f"{lab.prefix}ro-{len(created)}-{volume[-6:]}",
                                             labels=dict(lab.labels), host_config=host_config)
        created.append(container["Id"])
        lab.api.start(container["Id"])
        return lab.client.containers.get(container["Id"])

    try:
        s.proxy = proxy(read_only=False)
        wait_proxy_up_nginx(lab, s)
        s.write_config(service_yaml="default_env: blue\n" + FAST_GATE)
        assert lbgen(s, "apply").returncode == 0
        before = s.live()
        lab.api.remove_container(s.proxy.id, force=True)
        s.proxy = proxy(read_only=True)  # the same config, now on a read-only filesystem
        wait_proxy_up_nginx(lab, s)
        s.write_config(service_yaml="default_env: blue\n" + FAST_GATE)
        assert s.live() == before and served_generation(s) == parse_meta(before.decode()).generation
        load = Load(s.url, workers=2, max_seconds=60).start()
        try:
            for args in (["switch", "--env", "green"], ["apply"]):
                if args == ["apply"]:
                    s.add_backend("blue")
                MESSAGES.setdefault("read-only", one_error(
                    lbgen(s, *args), 3, "/etc/nginx/conf.d/lbgen.conf in proxy container", "read-only",
                    "nothing was changed"))
            time.sleep(0.3)
        finally:
            load.stop()
        assert s.live() == before
        assert served_generation(s) == parse_meta(before.decode()).generation
        assert s.envs_served() == {"blue"}
        assert load.sent > 0 and load.failed == 0, load.summary()
        FIGURES["read-only runs"] += 2
    finally:
        for container_id in created:
            lab._remove_container(container_id)
        lab.api.remove_volume(volume, force=True)


def wait_proxy_up_nginx(lab: Any, s: Scenario) -> None:
    lab.wait_for(lambda: s.proxy.exec_run(["test", "-s", "/run/nginx.pid"]).exit_code == 0, timeout=10,
                 what="nginx to start")
