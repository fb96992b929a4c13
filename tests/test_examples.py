"""The release script in examples/deploy.py, run against the fake proxy: it is what the README shows."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fakeproxy import FakeProxy
from lbgen import ExitCode, Lbgen
from test_monitor import FakeClock

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deploy.py"


def load_deploy():  # noqa: ANN201 - the example module
    spec = importlib.util.spec_from_file_location("lbgen_example_deploy", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def world(green_status: int = 200) -> tuple[FakeProxy, Lbgen]:
    fp = FakeProxy("nginx", "network: lbnet\nproxy: {kind: nginx, container: proxy}\n"
                   "services:\n  web: {default_env: blue, health: {interval: 1s, timeout: 1s, rise: 1}}\n")
    fp.backend("web-blue-1", "blue")
    fp.backend("web-green-1", "green", status=green_status)
    clock = FakeClock()  # the gate's 120s pass without waiting (one check a second: 120 of them, not 12,000)
    lb = Lbgen(fp.config, fp.engine, get=fp.get, clock=clock, sleep=clock.sleep, log=lambda e: None)
    lb.apply()
    return fp, lb


def test_deploy_switches_and_keeps_a_healthy_release():
    fp, lb = world()
    assert load_deploy().deploy(lb, "web", "green", watch_for=10, every=5, sleep=lambda s: None) == ExitCode.OK
    assert lb.status().to_dict()["services"]["web"]["active_env"] == "green"


def test_deploy_refused_by_the_gate_keeps_blue():
    fp, lb = world(green_status=503)
    assert load_deploy().deploy(lb, "web", "green", watch_for=10, every=5, sleep=lambda s: None) == ExitCode.GATE
    assert lb.status().to_dict()["services"]["web"]["active_env"] == "blue"


def test_deploy_rolls_back_when_the_new_release_stops_answering():
    fp, lb = world()
    green = fp.engine.get_container("web-green-1").networks["lbnet"]

    def sleep(_: float) -> None:  # while the script waits, green starts failing its checks
        fp.health[green] = 503

    assert load_deploy().deploy(lb, "web", "green", watch_for=10, every=5, sleep=sleep) == ExitCode.RELOAD
    status = lb.status().to_dict()["services"]["web"]
    assert (status["active_env"], status["previous_env"]) == ("blue", "green")
