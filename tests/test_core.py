"""apply, switch, rollback and the lock on a FakeEngine proxy (tests/fakeproxy.py): the orchestration's
guarantees, fast. The same guarantees are tested on real nginx/HAProxy in the *_integration tests."""
from __future__ import annotations

import os
import socket

import pytest

from fakeproxy import FakeProxy
from lbgen.model import Outcome
from lbgen.engine import ExecResult, Mount
from lbgen.events import event
from lbgen.app import Lbgen
from lbgen.errors import (ConfigReadOnly, ConfigWriteFailed, ContainerNotFound, DockerUnavailable, HealthGateFailed, LockHeld, NoBackends,
                          ProxyRejectedConfig, ReloadFailed)
from lbgen.proxies.scripts import INSTALL_SCRIPT
from lbgen.render import parse_meta
from lbgen.state import ProxyLock


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def make(kind="nginx", blue=2, green=2, green_status=200):
    fp = FakeProxy(kind)
    for i in range(blue):
        fp.backend(f"web-blue-{i}", "blue")
    for i in range(green):
        fp.backend(f"web-green-{i}", "green", status=green_status)
    clock = Clock()
    logs: list[str] = []
    app = Lbgen(fp.config, fp.engine, get=fp.get, clock=clock, sleep=clock.sleep, log=logs.append)
    app.core.proxy.verify_timeout = 0.5
    return fp, app, logs


def served_env(fp):
    return parse_meta(fp.live().decode()).active["web"]


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_apply_installs_reloads_verifies_and_commits(kind):
    fp, app, _ = make(kind)
    result = app.apply()
    assert result.changed
    assert fp.serving == result.generation == parse_meta(fp.live().decode()).generation
    assert fp.engine.signals == [("proxy", "HUP" if kind == "nginx" else "USR2")]
    assert served_env(fp) == "blue"
    # byte-identical: no write, no reload
    writes = [c for c in fp.engine.calls if c[0] == "put_file"]
    assert not app.apply().changed
    assert [c for c in fp.engine.calls if c[0] == "put_file"] == writes
    assert len(fp.engine.signals) == 1


@pytest.mark.parametrize("exec_input", [True, False])
def test_one_file_is_delivered_on_the_install_exec_where_the_engine_makes_that_cheaper(exec_input):
    """On a local engine HAProxy's config goes in on the install script's stdin: delivery and validation in
    one round trip. Over ssh (exec_input false) it is written first, in an archive; the result is the same."""
    fp, app, _ = make("haproxy")
    fp.engine.exec_input = exec_input
    since = len(fp.engine.calls)
    result = app.apply()
    assert result.changed and fp.serving == result.generation
    installs = [(argv, stdin) for (_, argv), stdin in zip(fp.engine.execs, fp.engine.exec_inputs)
                if argv[:3] == ["sh", "-c", INSTALL_SCRIPT]]
    assert len(installs) == 1
    argv, stdin = installs[0]
    writes = [c for c in fp.engine.calls[since:] if c[0] == "put_file"]
    if exec_input:
        assert argv[7:9] == ["--stdin", str(len(fp.live()))] and stdin == fp.live() and not writes
    else:
        assert "--stdin" not in argv and stdin is None and [w[2] for w in writes] == [fp.path + ".lbgen-new"]


def test_a_rejected_config_leaves_the_live_file_byte_identical():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    fp.validate = lambda data: (False, 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/conf.d/lbgen.conf:3')
    with pytest.raises(ProxyRejectedConfig) as info:
        app.apply()
    assert str(info.value) == ('nginx rejected the rendered config: nginx: [emerg] unknown directive "bogus" in '
                               '/etc/nginx/conf.d/lbgen.conf:3; the previous config is still live')
    assert info.value.exit_code == 3
    assert fp.live() == before
    assert len(fp.engine.signals) == 1  # no reload


def test_a_reload_that_does_not_take_effect_is_rolled_back():
    fp, app, _ = make()
    first = app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    fp.reload_takes_effect = False
    with pytest.raises(ReloadFailed, match="did not serve generation .* the previous config was restored") as info:
        app.apply()
    assert info.value.exit_code == 6
    assert fp.live() == before
    assert fp.serving == first.generation


def test_switch_gates_swaps_verifies_and_records():
    fp, app, _ = make()
    app.apply()
    result = app.switch("green")
    assert (result.outcome, result.from_env, result.to_env) == ("switched", "blue", "green")
    assert served_env(fp) == "green" and fp.serving == result.generation
    assert result.gate.passed and [b.name for b in result.gate.healthy] == ["web-green-0", "web-green-1"]
    state = app.core.store.load()
    assert state.previous == {"web": "blue"} and state.recorded_active == {"web": "green"}
    assert state.history[0].outcome == Outcome.SWITCHED and state.history[0].to_env == "green"
    assert not fp.engine.markers or fp.engine.removed  # the lock was released
    again = app.switch("green")
    assert again.outcome == "unchanged"
    back = app.rollback()
    assert (back.from_env, back.to_env) == ("green", "blue") and served_env(fp) == "blue"


def test_a_refused_gate_changes_nothing_and_is_recorded():
    fp, app, _ = make(green_status=503)
    app.apply()
    before = fp.live()
    with pytest.raises(HealthGateFailed) as info:
        app.switch("green", timeout=1.0)
    assert str(info.value) == ("green not healthy after 1s (web-green-0: HTTP 503 on /health; "
                               "web-green-1: HTTP 503 on /health); traffic stays on blue")
    assert fp.live() == before
    assert app.core.store.load().history[0].outcome == Outcome.REFUSED
    assert app.core.store.load().recorded_active == {}


def test_force_skips_the_gate_loudly():
    fp, app, logs = make(green_status=503)
    app.apply()
    result = app.switch("green", force=True)
    assert result.outcome == "switched" and result.forced
    assert event("gate-skipped", service="web", env="green", reason="--force") in logs
    assert app.history()[0].forced is True


def test_new_env_failing_after_the_swap_is_rolled_back():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    original = fp.get
    gate_done = {"n": 0}

    def flaky(url, timeout):
        status, body = original(url, timeout)
        if "/health" in url:
            gate_done["n"] += 1
            if gate_done["n"] > 4:  # two rounds of two backends pass the gate, then green dies
                return 503, ""
        return status, body

    app.core.get = fp.get = flaky
    app.core._checker = None
    app.core.proxy.get = flaky
    with pytest.raises(ReloadFailed, match="green stopped passing its health check after the switch .* traffic stays on blue"):
        app.switch("green")
    assert fp.live() == before
    assert served_env(fp) == "blue"
    assert app.core.store.load().history[0].outcome == Outcome.ROLLED_BACK


def test_one_slow_answer_after_the_swap_is_checked_again_not_rolled_back():
    """After the swap a failing backend counts as failing only after `fall` (2 here) failures in a row,
    `interval` apart: a busy backend's one timeout does not undo the switch; one that keeps failing does."""
    for failures, outcome in ((1, "switched"), (2, "rolled_back")):
        fp, app, _ = make()
        app.apply()
        original, seen = fp.get, {"gate": 0, "failed": 0}
        slow = fp.engine.get_container("web-green-0").networks["lbnet"]

        def slow_once(url, timeout, failures=failures):
            if "/health" in url and f"//{slow}:" in url:
                seen["gate"] += 1
                if seen["gate"] > 2 and seen["failed"] < failures:  # after the gate's two rounds
                    seen["failed"] += 1
                    raise TimeoutError("timeout after 2s")
            return original(url, timeout)

        app.core.get = fp.get = slow_once
        app.core._checker = None
        app.core.proxy.get = slow_once
        if outcome == "switched":
            assert app.switch("green").outcome == "switched"
            assert served_env(fp) == "green" and seen["failed"] == 1
        else:
            with pytest.raises(ReloadFailed, match="green stopped passing its health check after the switch "
                                                   r"\(web-green-0: timeout after 2s\)"):
                app.switch("green")
            assert served_env(fp) == "blue"


def test_dry_run_changes_nothing():
    fp, app, _ = make()
    app.apply()
    before, signals = fp.live(), list(fp.engine.signals)
    result = app.switch("green", dry_run=True)
    assert result.outcome == "dry-run"
    assert "-# lbgen-meta:" in result.diff and "+# lbgen-pool: web green web-green-0 web-green-1" in result.diff
    assert fp.live() == before and fp.engine.signals == signals
    assert app.core.store.load().history == []


def test_no_backends_in_the_target_env():
    fp, app, _ = make(green=0)
    app.apply()
    with pytest.raises(NoBackends, match=r"no backends of service web in env green \(envs present: blue\); traffic stays on blue"):
        app.switch("green")


def test_rollback_without_a_previous_env_says_what_to_do():
    fp, app, _ = make()
    app.apply()
    with pytest.raises(Exception, match="no previous env recorded for service web; use `lbgen switch --service web --env ENV`"):
        app.rollback()


def test_reconcile_leaves_a_consistent_proxy_alone():
    fp, app, _ = make()
    app.apply()
    app.switch("green")
    assert fp.engine.read("proxy", fp.path + ".lbgen-prev") is not None  # the config before, kept as a backup
    reads = len([c for c in fp.engine.calls if c[0] == "read_file"])
    live, note = app.core.proxy.reconcile()
    assert (live.encode(), note) == (fp.live(), None)
    assert len([c for c in fp.engine.calls if c[0] == "read_file"]) == reads + 1  # only the live file


def test_reconcile_restores_a_swap_that_never_took_effect():
    fp, app, _ = make()
    app.apply()
    old = fp.live()
    # Killed after the swap, before the reload: disk has the new config, the proxy serves the old one.
    fp.engine.write("proxy", fp.path + ".lbgen-prev", old)
    rendered = app.core.desired(app.core.read_world(), {"web": "green"})
    fp.engine.write("proxy", fp.path, rendered.text)
    live, note = app.core.proxy.reconcile()
    assert note.startswith("an interrupted switch had not taken effect; restored the previous config")
    assert live.encode() == fp.live() == old
    assert fp.serving == parse_meta(old.decode()).generation
    assert app.switch("green").outcome == "switched"  # and the next command proceeds


def test_reconcile_reloads_when_the_proxy_lags_behind_its_file():
    fp, app, _ = make()
    app.apply()
    rendered = app.core.desired(app.core.read_world(), {"web": "green"})
    fp.engine.write("proxy", fp.path, rendered.text)  # e.g. an operator's edit, or a lost reload
    live, note = app.core.proxy.reconcile()
    assert "reloaded" in note and fp.serving == rendered.generation


def test_proxy_not_running_or_missing():
    fp, app, _ = make()
    fp.engine.update("proxy", running=False)
    with pytest.raises(ContainerNotFound, match="proxy container proxy is not running"):
        app.apply()
    fp2, app2, _ = make()
    fp2.engine.fail_with = DockerUnavailable("cannot reach the Docker daemon at unix:///x: Connection refused")
    with pytest.raises(DockerUnavailable):
        app2.apply()


def test_proxy_not_on_the_network_is_refused_before_any_change():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    fp.engine.update("proxy", networks={"other": "192.0.2.200"})
    app.core.proxy._info = None
    with pytest.raises(ContainerNotFound, match="not attached to network lbnet; attach it"):
        app.apply()
    assert fp.live() == before and len(fp.engine.signals) == 1


def test_a_read_only_proxy_filesystem_is_a_clear_error():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    fp.engine.exec_input = False  # the archive write (over ssh) is what says "read-only"
    fp.engine.fail_on["put_file"] = PermissionError("read-only file system")
    with pytest.raises(ConfigReadOnly, match="cannot write /etc/nginx/conf.d/lbgen.conf in proxy container proxy: "
                                             "read-only file system \\(read-only\\); make it writable; "
                                             "nothing was changed") as raised:
        app.apply()
    assert raised.value.exit_code == 3
    assert fp.live() == before


def test_a_read_only_mount_is_refused_before_anything_is_uploaded():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    mount = Mount("bind", "/etc/nginx/conf.d", source="/srv/proxy/conf.d", rw=False)
    fp.engine.update("proxy", mounts=(mount,))
    fp.engine.calls.clear()
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None)  # a new lbgen run inspects anew
    with pytest.raises(ConfigReadOnly) as raised:
        app.apply()
    assert str(raised.value) == (
        "/etc/nginx/conf.d/lbgen.conf in proxy container proxy is on a read-only bind mount /srv/proxy/conf.d "
        "-> /etc/nginx/conf.d; lbgen must write it. Mount it read-write (drop `:ro` from the -v/--mount of "
        "/etc/nginx/conf.d); nothing was changed")
    assert not [c for c in fp.engine.calls if c[0] in ("put_file", "exec", "signal")]
    assert fp.live() == before


def test_a_docker_error_while_writing_the_config_is_exit_4_and_changes_nothing():
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    fp.engine.exec_input = False  # the archive write first (over ssh)
    fp.engine.fail_on["put_file"] = DockerUnavailable("the Docker daemon could not write: no space left on device")
    with pytest.raises(ConfigWriteFailed, match="the previous config is still live") as raised:
        app.apply()
    assert raised.value.exit_code == 4
    assert fp.live() == before


def test_a_config_the_install_cannot_write_from_stdin_is_exit_4_and_changes_nothing():
    """The install script's exit 5 (the file on its stdin could not be written) is a write failure."""
    fp, app, _ = make()
    app.apply()
    before = fp.live()
    fp.backend("web-blue-9", "blue")
    real_sh = fp.engine.exec_handlers["sh"]

    def full_disk(engine, container, argv):
        if argv[2] == INSTALL_SCRIPT:
            return ExecResult(5, "sh: 1: cannot create /etc/nginx/conf.d/lbgen.conf.lbgen-new: No space left on device\n")
        return real_sh(engine, container, argv)

    fp.engine.exec_handlers["sh"] = full_disk
    with pytest.raises(ConfigWriteFailed, match="^cannot write /etc/nginx/conf.d/lbgen.conf in proxy container proxy: "
                                                ".*No space left on device; the previous config is still live$") as raised:
        app.apply()
    assert raised.value.exit_code == 4
    assert fp.live() == before


def test_a_single_file_mount_is_written_over_not_renamed():
    fp, app, _ = make()
    fp.engine.update("proxy", mounts=(Mount("bind", "/etc/nginx/conf.d/lbgen.conf", source="/srv/lbgen.conf"),))
    app.apply()
    installs = [argv for _, argv in fp.engine.execs if argv[:1] == ["sh"]]
    assert installs and all(argv[6] == "overwrite" for argv in installs)
    assert fp.live() is not None and fp.serving is not None


# --- the lock --------------------------------------------------------------------------------------

def lock(fp, clock, purpose="switch", wait=2.0, lease=60.0):
    return ProxyLock(fp.engine, "proxy", purpose, wait=wait, lease=lease,
                     clock=clock, sleep=clock.sleep)


def test_lock_is_exclusive_and_names_its_holder():
    fp = FakeProxy()
    clock = Clock()
    first = lock(fp, clock, "switch web to green")
    first.acquire()
    with pytest.raises(LockHeld) as info:
        lock(fp, clock).acquire()
    assert "another lbgen holds the lock on proxy proxy: " in str(info.value)
    assert f"@{socket.gethostname()} pid {os.getpid()} (switch web to green, since" in str(info.value)
    assert info.value.exit_code == 7
    first.release()
    second = lock(fp, clock)
    second.acquire()
    second.release()


def test_an_expired_lease_is_recovered_from_another_host():
    fp = FakeProxy()
    clock = Clock()
    foreign = lock(fp, clock)
    labels = foreign._labels()
    labels["lbgen.lock.host"] = "another-runner"
    fp.engine.create_marker(foreign.name, fp.info.image, labels)
    with pytest.raises(LockHeld):
        lock(fp, clock, wait=1.0).acquire()
    clock.now += 61  # past the lease
    recovered = lock(fp, clock)
    recovered.acquire()
    assert recovered.marker_id


def test_a_dead_holder_on_this_host_is_recovered_at_once():
    fp = FakeProxy()
    clock = Clock()
    dead = lock(fp, clock)
    labels = dead._labels()
    labels["lbgen.lock.pid"] = "999999"
    fp.engine.create_marker(dead.name, fp.info.image, labels)
    fresh = lock(fp, clock, wait=0.0)
    fresh.acquire()
    assert fresh.marker_id
