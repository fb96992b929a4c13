"""Which release is live survives the proxy (issue #9), on a real engine with real nginx and HAProxy: the
proxy recreated, restarted and moved to another image, with and without watch, while a client samples
continuously; the record read by a second lbgen in another container; the holder deleted by hand; a
writer killed mid-write."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dockerlab import http_get
from lbgen.docker_engine import DockerEngine
from lbgen.holder import LABEL, Holder, holder_name
from scenario import Scenario
from test_watch_integration import Running

pytestmark = pytest.mark.integration
PROXY_COMMANDS = {"nginx": ["nginx", "-g", "daemon off;"],
                  "haproxy": ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]}


class Sampler:
    """Requests through the proxy, one after another, until stopped; counts the env in each answer."""

    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.url = s.url
        self.seen: Counter = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = http_get(self.url, timeout=1.0)
            except (TimeoutError, ConnectionError):
                self.seen["no answer"] += 1
                time.sleep(0.005)
                continue
            word = body.split()[0] if body.split() else ""
            self.seen[word.split("=", 1)[1] if word.startswith("env=") else f"HTTP {status}"] += 1

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)


def replace_proxy(s: Scenario, how: str) -> None:
    """recreate: `docker rm -f` + `docker run` (same name); restart; image: the same, from another image."""
    if how == "restart":
        s.proxy.restart(timeout=5)
    else:
        name = s.proxy.name
        s.proxy.remove(force=True)
        image = s.lab.derived_image("proxy-v2") if how == "image" else None
        s.proxy = s.lab.container(s.net, name[len(s.lab.prefix):], command=PROXY_COMMANDS[s.kind], image=image)
    if s.kind == "nginx":
        s.lab.wait_for(lambda: s.proxy.exec_run(["test", "-s", "/run/nginx.pid"]).exit_code == 0, timeout=10,
                       what="nginx to start")


def wait_green(s: Scenario, sampler: Sampler, timeout: float = 20.0) -> None:
    sampler.url = s.url
    s.lab.wait_for(lambda: _only_green(s), timeout=timeout, what="green to be served again", interval=0.05)


def _only_green(s: Scenario) -> bool:
    try:
        return s.envs_served(3) == {"green"}
    except (AssertionError, TimeoutError, ConnectionError, IndexError):
        return False


@pytest.mark.parametrize("watching", [False, True], ids=["commands", "watch"])
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_green_stays_served_when_the_proxy_is_recreated_restarted_or_replaced(lab, tmp_path, kind, watching):
    s = Scenario(lab, tmp_path, kind)
    watch = Running(s, DockerEngine()) if watching else contextlib.nullcontext()
    with watch:  # watch's startup sync configures the proxy (blue); without watch, apply does
        if not watching:
            s.app().apply()
        assert s.app().switch("green", timeout=30).outcome == "switched"
        _sample_through_replacements(s, watching, watch)


def _sample_through_replacements(s: Scenario, watching: bool, watch: Any) -> None:
    lab = s.lab
    with Sampler(s) as sampler:
        for how in ("recreate", "restart", "image"):
            replace_proxy(s, how)
            if not watching:
                s.app().status()  # any command configures a proxy that does not route what is recorded
            wait_green(s, sampler)
    assert sampler.seen["green"] > 0 and sampler.seen["blue"] == 0, sampler.seen
    if watching:
        assert any("reason=proxy-start" in line for line in watch.lines("apply")), watch.out.getvalue()
    web = s.app().status().to_dict()["services"]["web"]
    assert (web["active_env"], web["previous_env"], web["active_env_recorded"]) == ("green", "blue", True)
    assert [(e.from_env, e.to_env) for e in s.app().history()] == [("blue", "green")]
    holder = lab.client.containers.get(holder_name(s.proxy.name))
    assert holder.status == "created" and holder.labels[LABEL] == s.proxy.name


def test_a_second_lbgen_in_another_container_reads_and_writes_the_same_record(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    s.app().switch("green", timeout=30)
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "docker").is_dir())
    # lbgen as installed: the package, with the top-level templates/ as its lbgen.templates
    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    shutil.copytree(root / "lbgen", src / "lbgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "templates", src / "lbgen" / "templates")

    def other_lbgen(*args: str) -> tuple[int, str]:
        created = lab.api.create_container(
            lab.image, command=["python3", "-m", "lbgen", "-c", "/cfg/lbgen.yaml", *args],
            environment={"PYTHONPATH": "/src:/deps"}, labels=lab.labels,
            host_config=lab.api.create_host_config(network_mode=s.net, binds={
                str(src): {"bind": "/src", "mode": "ro"}, site: {"bind": "/deps", "mode": "ro"},
                str(tmp_path): {"bind": "/cfg", "mode": "ro"},
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}}))
        lab.api.start(created["Id"])
        code = lab.api.wait(created["Id"], timeout=120)["StatusCode"]
        out, err = (lab.api.logs(created["Id"], stdout=o, stderr=not o).decode() for o in (True, False))
        assert code == 0, err
        return code, out

    code, out = other_lbgen("status", "--json")
    assert code == 0, out
    web = json.loads(out)["services"]["web"]
    assert (web["active_env"], web["previous_env"], web["active_env_recorded"]) == ("green", "blue", True)
    code, out = other_lbgen("rollback", "--timeout", "30s")
    assert code == 0, out
    assert s.envs_served() == {"blue"}
    assert [(e.from_env, e.to_env) for e in s.app().history()] == [("green", "blue"), ("blue", "green")]


def test_the_holder_deleted_by_hand_gives_the_loud_fallback(lab, tmp_path):
    s = Scenario(lab, tmp_path, "haproxy")
    s.app().apply()
    s.app().switch("green", timeout=30)
    lab.api.remove_container(holder_name(s.proxy.name), force=True)
    app = s.app()
    report = app.health()
    assert report.exit_code == 1 and "active env assumed (no switch on record) for web" in report.nagios()
    assert any(e.name == "warning" and "no record of which env is active for service web" in e.get("message")
               for e in s.logs)
    web = app.status().to_dict()["services"]["web"]
    assert (web["active_env"], web["active_env_recorded"]) == ("blue", False)


WRITER = """
import sys, json
from lbgen.docker_engine import DockerEngine
from lbgen.holder import Holder
holder = Holder(DockerEngine(), sys.argv[1])
n = 0
while True:
    n += 1
    holder.write(json.dumps({"n": n, "pad": "x" * 400000}))
    print(n, flush=True)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_record_readable(lab):
    proxy = lab.prefix + "killed-writer"
    engine = DockerEngine()
    try:
        for delay in (0.35, 0.6, 0.9):
            writer = subprocess.Popen([sys.executable, "-c", WRITER, proxy], stdout=subprocess.PIPE, text=True)
            assert writer.stdout.readline().strip() == "1"  # one complete record first
            time.sleep(delay)
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
            done = [int(line) for line in writer.stdout.read().split()]
            slot = Holder(engine, proxy).read()
            assert slot is not None
            n = json.loads(slot.body)["n"]
            last = done[-1] if done else 1
            assert n in (last, last + 1)  # the last completed write, or the one in flight had landed whole
    finally:
        engine.remove_container(holder_name(proxy))
