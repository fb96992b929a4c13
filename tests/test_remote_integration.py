"""lbgen run where a CI runner runs it: in a container that has the engine's socket but is not on the app
network (it sits on a network of its own, which Docker isolates from the app's). With `checks: auto` it
notices by itself and checks through the engine; the gate, verification and `health` behave as on the host."""
from __future__ import annotations

import compileall
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

from lbgen.probe import Probe
from scenario import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loadgen import Load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["nginx", "haproxy"]


def docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        pytest.skip("the remote-runner tests mount the engine's unix socket into a container")
    return host[len("unix://"):]


class Runner:
    """A container with python3 (the test image's, 3.11), lbgen's dependencies (this interpreter's
    site-packages, read-only), a copy of lbgen with its templates, the engine socket and lbgen.yaml's folder;
    on a network of its own, so the app network's addresses do not answer it."""

    def __init__(self, lab: Any, s: Scenario, src: Path) -> None:
        if sys.version_info[:2] != (3, 11):
            pytest.skip("the runner container's python is Debian 12's 3.11; this interpreter's packages must match")
        own_net, _ = lab.network("runner")
        site = sysconfig.get_paths()["purelib"]
        self.container = lab.container(own_net, "runner", command=["sleep", "infinity"], binds={
            docker_socket(): "/var/run/docker.sock:rw", site: "/runner/site:ro", str(src): "/runner/src:ro",
            str(s.config_path.parent): "/runner/cfg:ro"})
        self.scenario = s

    def lbgen(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = self.container.exec_run(
            ["python3", "-m", "lbgen", "-c", f"/runner/cfg/{self.scenario.config_path.name}", *args],
            environment={"PYTHONPATH": "/runner/src:/runner/site", **(env or {})}, demux=True)
        out, err = result.output
        return result.exit_code, (out or b"").decode(), (err or b"").decode()


@pytest.fixture(scope="session")
def lbgen_copy(tmp_path_factory: Any) -> Path:
    """lbgen as installed (package + templates as lbgen/templates), without touching the checkout."""
    root = tmp_path_factory.mktemp("runner-src")
    shutil.copytree(ROOT / "lbgen", root / "lbgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", root / "lbgen" / "templates")
    # Compiled once here (the runner's 3.11 reads these): the copy is mounted read-only, so without them
    # every `python3 -m lbgen` in a runner compiled the whole package again.
    compileall.compile_dir(str(root / "lbgen"), quiet=1)
    return root


@pytest.mark.parametrize("kind", KINDS)
def test_a_healthy_green_passes_the_gate_from_a_runner_off_the_network_and_no_request_fails(
        lab, tmp_path, kind, lbgen_copy):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    runner = Runner(lab, s, lbgen_copy)
    load = Load(s.url, workers=4, max_seconds=60).start()
    try:
        time.sleep(0.3)
        code, out, err = runner.lbgen("switch", "--env", "green", "--timeout", "20s")
        time.sleep(0.3)
    finally:
        load.stop()
    assert code == 0, (out, err)
    assert out.startswith("switched service=web from=blue to=green "), out
    assert "event=checks via=engine" in err and "the app network is not reachable from here" in err, err
    assert s.envs_served() == {"green"}
    summary = load.summary()
    assert summary["failed"] == 0 and summary["by_env"].get("green", 0) > 0, summary


@pytest.mark.parametrize("kind", KINDS)
def test_an_unhealthy_green_is_refused_from_a_runner_naming_the_backend(lab, tmp_path, kind, lbgen_copy):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    sick = s.backends["green"][1]
    lab.wait_http(f"http://{lab.ip(sick, s.net)}:8080/admin/health?status=503")
    before = s.live()
    runner = Runner(lab, s, lbgen_copy)
    code, out, err = runner.lbgen("switch", "--env", "green", "--timeout", "2s")
    assert code == 5, (out, err)
    assert f"{sick.name}: HTTP 503 on /health" in err and err.rstrip().endswith("traffic stays on blue"), err
    assert s.live() == before and s.envs_served() == {"blue"}


@pytest.mark.parametrize("kind", KINDS)
def test_verification_from_a_runner_catches_a_reload_that_silently_does_nothing(lab, tmp_path, kind, lbgen_copy):
    """The proxy's master is stopped (SIGSTOP from outside, so the reload signal waits): its workers keep
    serving the old generation, which only the status listener, read through the engine, can tell."""
    s = Scenario(lab, tmp_path, kind)
    first = s.app().apply()
    before = s.live()
    runner = Runner(lab, s, lbgen_copy)
    lab.api.kill(s.proxy.id, signal="SIGSTOP")
    try:
        code, out, err = runner.lbgen("switch", "--env", "green", "--timeout", "20s")
    finally:
        lab.api.kill(s.proxy.id, signal="SIGCONT")
    assert code == 6, (out, err)
    assert "did not serve generation" in err and "restored the previous config, traffic stays on blue" in err, err
    assert f"generation={first.generation}" in err, err
    assert s.live() == before
    assert s.envs_served() == {"blue"}


@pytest.mark.parametrize("kind", KINDS)
def test_health_from_a_runner_says_what_it_says_on_the_host(lab, tmp_path, kind, lbgen_copy):
    from click.testing import CliRunner

    from lbgen.cli import cli

    s = Scenario(lab, tmp_path, kind)
    s.app().switch("blue")  # on record: blue and green both run, and an assumed active env is a WARNING
    runner = Runner(lab, s, lbgen_copy)

    def both() -> tuple[tuple[int, str], tuple[int, str]]:
        host = CliRunner().invoke(cli, ["-c", str(s.config_path), "health"])
        code, out, _ = runner.lbgen("health")
        return (host.exit_code, host.stdout.split(" | ")[0]), (code, out.split(" | ")[0])

    assert both() == ((0, "LBGEN OK - 1 service, 2/2 backends healthy"),) * 2
    lab.wait_http(f"http://{lab.ip(s.backends['blue'][0], s.net)}:8080/admin/health?status=503")
    host, remote = both()
    assert host == remote and host[0] == 1, (host, remote)
    lab.wait_http(f"http://{lab.ip(s.backends['blue'][1], s.net)}:8080/admin/health?status=503")
    host, remote = both()
    assert host == remote and host[0] == 2, (host, remote)
    # status goes through the engine too, and agrees with the host
    code, out, err = runner.lbgen("status", "--json")
    assert code == 0, err
    assert f'"served_generation": "{s.app().status().proxy.served_generation}"' in out


@pytest.mark.parametrize("image", ["official/nginx", "official/haproxy"])
def test_the_probe_works_in_the_official_images_as_they_are(lab, image):
    """The replicas run as upstream does (user haproxy; no curl or wget in either: bash's /dev/tcp)."""
    from lbgen.docker_engine import DockerEngine

    net, _ = lab.network("app")
    up = lab.backend(net, "web", "blue")
    down = lab.backend(net, "web", "blue")
    lab.wait_http(f"http://{lab.ip(down, net)}:8080/admin/health?status=503")
    proxy = lab.official_nginx(net) if image == "official/nginx" else lab.official_haproxy(net)
    probe = Probe(DockerEngine(), proxy.name)
    answers = probe.get_many([(lab.ip(up, net), 8080, "/health"), (lab.ip(down, net), 8080, "/health"),
                              (lab.ip(up, net), 8081, "/health")], timeout=2.0)
    assert answers == [200, 503, "connection refused"]
    status, body = probe.get(f"http://{lab.ip(up, net)}:8080/", 2.0)
    assert status == 200 and body
