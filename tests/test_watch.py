"""The watch loop: events lead to applies, bursts are debounced, a stopping backend leaves its pool at once,
the health loop ejects with hysteresis, a lost event stream reconnects and re-syncs, an empty or failed
discovery never empties a pool, a failed apply keeps the last good config. A fake engine, a fake proxy and
a fake clock: no real waiting except for the event reader thread handing over."""
from __future__ import annotations

import dataclasses
import io
import json
import queue
import re
import threading
from typing import Any, Iterator

import pytest

from fakes import FakeEngine
from lbgen.core import Core
from lbgen.config import parse_config
from lbgen.engine import EngineEvent
from lbgen.errors import ConfigError, DockerUnavailable
from lbgen.watch.log import EventLog
from lbgen.watch.loop import Watcher
from test_monitor import CONFIG, World

END = object()


class StreamEngine(FakeEngine):
    """A FakeEngine whose events() blocks like Docker's stream until the test pushes, ends or breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[queue.Queue] = []
        self.opened = threading.Event()

    def events(self, label: str, since: float | None = None, names: Any = ()) -> Iterator[EngineEvent]:
        self._call("events", label, since)
        stream: queue.Queue = queue.Queue()
        self.streams.append(stream)
        self.opened.set()
        while True:
            item = stream.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            if label in item.labels or item.container_name in names:
                yield item

    def end(self, item: Any = END) -> None:
        self.streams[-1].put(item)

    def close_all(self) -> None:
        for stream in self.streams:
            stream.put(END)


class WatchWorld(World):
    def __init__(self, config_text: str = CONFIG) -> None:
        super().__init__(config_text)
        engine = StreamEngine()
        engine.containers, engine.files = self.engine.containers, self.engine.files
        engine.exec_handlers, engine.signal_handlers = self.engine.exec_handlers, self.engine.signal_handlers
        engine._next_address = self.engine._next_address
        self.engine = engine
        self.out = io.StringIO()
        self.config_text = config_text
        for name in ("web-1", "web-2", "web-3"):
            self.backend(name)
        self.backend("api-1", service="api", env=None)

    def factory(self) -> Core:
        return Core(parse_config(self.config_text), self.engine, get=self.get, clock=self.clock,
                     sleep=self.clock.sleep, log=self.log.emit)

    def watcher(self, **kw: Any) -> Watcher:
        self.log = EventLog(self.out)
        kw.setdefault("health", False)

        def spawn(target, name):
            if name == "lbgen-health":
                target()  # synchronously: the checks are fake and instant
            else:
                threading.Thread(target=target, name=name, daemon=True).start()

        self.w = Watcher(self.factory, self.engine, clock=self.clock, wall=lambda: 0.0, log=self.log,
                         spawn=spawn, **kw)
        return self.w

    def lines(self, event: str | None = None) -> list[str]:
        lines = self.out.getvalue().splitlines()
        return [line for line in lines if event is None or line.startswith(f"event={event} ")
                or line == f"event={event}"]

    def event(self, action: str, name: str) -> EngineEvent:
        info = self.engine.get_container(name)
        return EngineEvent(action, info.id, info.name, dict(info.labels))


@pytest.fixture
def world() -> Iterator[WatchWorld]:
    w = WatchWorld()
    yield w
    w.engine.close_all()


def started(world: WatchWorld, **kw: Any) -> Watcher:
    watcher = world.watcher(**kw)
    watcher.start()
    watcher.step()
    assert watcher.connected
    return watcher


def pump(watcher: Watcher) -> None:
    """Step until nothing is queued (a health pass posts its results for the next step)."""
    watcher.step()
    while not watcher.queue.empty():
        watcher.step()


PHASE_FIELDS = r"(?: (?:lock|reconcile|discover|gate|render|deliver|validate|reload|verify|record)=\d+\.\d\ds)*"


def strip_took(line: str) -> str:
    line = re.sub(PHASE_FIELDS + r" took=[0-9.]+s", "", line)
    return re.sub(r" generation=[0-9a-f]{12} via=(?:reload|runtime)", "", line)


# --- events -> apply ------------------------------------------------------------------------------------

def test_startup_syncs_the_proxy_and_follows_the_labelled_events(world):
    started(world)
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]
    assert [strip_took(line) for line in world.lines("apply")] == [
        "event=apply service=web reason=startup backends=3",
        "event=apply service=api reason=startup backends=1",
    ]
    assert re.fullmatch(r"event=apply service=web reason=startup backends=3 generation=[0-9a-f]{12} via=reload lock=\S+ "
                        r"reconcile=\S+ discover=\S+ render=\S+ deliver=\S+ validate=\S+ reload=\S+ verify=\S+ "
                        r"took=\d+\.\d\ds", world.lines("apply")[0])
    assert world.engine.opened.wait(2)
    assert [c for c in world.engine.calls if c[0] == "events"] == [("events", "lbgen.service", -1.0)]


def test_a_start_after_a_quiet_spell_is_applied_at_once_and_the_next_after_the_quiet_time(world):
    w = started(world)
    world.backend("web-4")
    w.feed(world.event("connect", "web-4"))  # Docker connects the network, then starts the container
    w.step()
    assert "web-4" not in world.routed()  # a connect alone waits for the start that follows it
    w.feed(world.event("start", "web-4"))
    w.step()  # the first start after a quiet spell: no waiting
    assert world.routed() == ["web-1", "web-2", "web-3", "web-4", "api-1"]
    assert strip_took(world.lines("apply")[-1]) == "event=apply service=web reason=network-connect,container-start backends=4"
    world.clock.advance(0.3)
    world.backend("web-5")
    w.feed(world.event("start", "web-5"))
    w.step()
    assert "web-5" not in world.routed()  # within a burst: 100ms of quiet first
    world.clock.advance(0.1)
    w.step()
    assert "web-5" in world.routed()


def _reads_before_the_lock(world: WatchWorld, since: int) -> list[tuple]:
    calls = world.engine.calls[since:]
    lock = next(i for i, c in enumerate(calls) if c[0] == "create_marker")
    return [c for c in calls[:lock] if c[0] in ("read_file", "get_archive", "read_files")]


def test_a_change_after_a_converge_goes_to_the_lock_without_reading_the_proxy_first(world):
    """The warm path: what the last converge left live is the judge; converge reads again under the lock."""
    w = started(world)
    world.backend("web-4")
    since = len(world.engine.calls)
    w.feed(world.event("start", "web-4"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert world.routed() == ["web-1", "web-2", "web-3", "web-4", "api-1"]
    assert _reads_before_the_lock(world, since) == []
    # The next change is judged against what this one made live.
    world.backend("web-5")
    since = len(world.engine.calls)
    w.feed(world.event("start", "web-5"))
    w.step()
    world.clock.advance(1.0)  # the debouncer's one apply per max_delay within a burst
    w.step()
    assert "web-5" in world.routed() and _reads_before_the_lock(world, since) == []


def test_a_health_pass_that_changes_the_counts_goes_to_the_lock_without_reading_first(world):
    w = started(world, health=True, interval=5.0)
    world.answer("web-2", 503)
    pump(w)  # the first pass right after the sync: web-2 fails once
    since = len(world.engine.calls)
    world.clock.advance(5.0)
    pump(w)  # the second failure ejects it
    assert world.routed() == ["web-1", "web-3", "api-1"]
    names = [c[0] for c in world.engine.calls[since:]]
    # The pass's own survey reads the world (what to check); its apply then only discovers, and locks.
    survey_done = names.index("list_containers")
    assert "read_file" not in names[survey_done:names.index("create_marker")], names


def test_a_switch_made_elsewhere_is_not_missed_by_the_warm_path(world):
    """Another lbgen switched web to green (record and live config) after watch's last converge: the next
    event is decided on what is really there, not on what watch last saw."""
    w = started(world)
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]
    world.backend("web-green-1", env="green")
    world.record(web="green")
    core = world.factory()
    with core.lock("switch elsewhere"):
        core.converge()
    assert world.routed() == ["web-green-1", "api-1"]
    # A green backend starts: routed, on green (watch's own last view said blue).
    world.backend("web-green-2", env="green")
    w.feed(world.event("start", "web-green-2"))
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-green-1", "web-green-2", "api-1"]
    # A blue backend starts: watch's last view (blue active) would route it; the record says green.
    reloads = world.reloads
    world.backend("web-6")
    w.feed(world.event("start", "web-6"))
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-green-1", "web-green-2", "api-1"] and world.reloads == reloads


def test_a_recreated_proxy_is_configured_from_the_record_on_its_start_event(world):
    world.backend("web-green-1", env="green")
    world.record(web="green")
    w = started(world)
    assert world.routed() == ["web-green-1", "api-1"]
    # `docker rm -f proxy && docker run ... proxy`: same name, empty filesystem, serving nothing.
    old = world.engine.get_container("proxy")
    world.engine.remove_container(old.id)
    world.info = world.engine.add_proxy("proxy", "nginx", network="lbnet", address=old.networks["lbnet"], id="f" * 64)
    world.serving = None
    w.feed(world.event("start", "proxy"))
    w.step()  # no debounce: the proxy's start is applied at once
    assert world.routed() == ["web-green-1", "api-1"]
    assert [strip_took(line) for line in world.lines("apply")][-2:] == [
        "event=apply service=web reason=proxy-start backends=1",
        "event=apply service=api reason=proxy-start backends=1",
    ]
    assert not world.lines("warning")


def test_an_event_that_changes_nothing_reloads_nothing(world):
    w = started(world)
    reloads = world.reloads
    w.feed(world.event("health_status", "web-1"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert world.reloads == reloads and len(world.lines("apply")) == 2
    assert w.metrics.get("lbgen_watch_applies_total", result="unchanged") == 1


def test_a_burst_of_50_starts_is_two_reloads(world):
    """The first start at once (it came after a quiet spell), the other 49 together."""
    w = started(world)
    reloads = world.reloads
    for i in range(50):
        world.backend(f"burst-{i:02d}")
        w.feed(world.event("start", f"burst-{i:02d}"))
        w.step()
        world.clock.advance(0.01)
        w.step()
    world.clock.advance(0.1)
    w.step()
    assert world.reloads - reloads == 2
    assert len([n for n in world.routed() if n.startswith("burst-")]) == 50


def test_a_slow_long_burst_reloads_at_most_once_per_max_delay(world):
    w = started(world)
    reloads = world.reloads
    for i in range(50):  # one start every 150ms for 7.5s: each gap is longer than the quiet time
        world.backend(f"slow-{i:02d}")
        w.feed(world.event("start", f"slow-{i:02d}"))
        for _ in range(3):
            world.clock.advance(0.05)
            w.step()
    world.clock.advance(1.0)
    w.step()
    assert 2 <= world.reloads - reloads <= 9
    assert len([n for n in world.routed() if n.startswith("slow-")]) == 50


def test_a_stopping_backend_leaves_the_pool_at_once_and_stays_out(world):
    w = started(world)
    w.feed(world.event("kill", "web-2"))  # the container is still running (draining)
    w.step()  # no clock advance: no debouncing on the stop path
    assert world.engine.get_container("web-2").running
    assert world.routed() == ["web-1", "web-3", "api-1"]
    assert strip_took(world.lines("apply")[-1]) == "event=apply service=web reason=container-kill backends=2"
    # Another change while web-2 still drains does not bring it back.
    world.backend("web-4")
    w.feed(world.event("start", "web-4"))
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-1", "web-3", "web-4", "api-1"]
    # It dies, and is started again: back in the pool.
    w.feed(world.event("die", "web-2"))
    w.step()
    w.feed(world.event("start", "web-2"))
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-1", "web-2", "web-3", "web-4", "api-1"]


@dataclasses.dataclass(frozen=True)
class SignalEvent(EngineEvent):
    signal: str | None = None  # what Docker reports in a kill event's attributes


def test_a_kill_that_only_asks_for_a_reload_keeps_the_backend(world):
    w = started(world)
    info = world.engine.get_container("web-2")
    w.feed(SignalEvent("kill", info.id, info.name, dict(info.labels), signal="1"))  # docker kill -s HUP
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"] and not w.stopping
    w.feed(SignalEvent("kill", info.id, info.name, dict(info.labels), signal="15"))
    w.step()
    assert world.routed() == ["web-1", "web-3", "api-1"]


def test_stop_events_queued_together_make_one_apply(world):
    w = started(world)
    reloads = world.reloads
    for name in ("web-1", "web-2"):
        w.feed(world.event("kill", name))
    w.step()
    assert world.reloads - reloads == 1 and world.routed() == ["web-3", "api-1"]


def test_the_last_backends_stopping_do_not_empty_the_pool(world):
    w = started(world)
    for name in ("web-1", "web-2", "web-3"):
        w.feed(world.event("kill", name))
    w.step()
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]
    assert world.lines("guard") == ['event=guard service=web kept=3 detail="discovery found no backend for the '
                                    'pool; keeping the last known ones"']


# --- never empty, never worse ------------------------------------------------------------------------------

def test_an_empty_discovery_does_not_empty_the_pool(world, monkeypatch):
    w = started(world)
    reloads = world.reloads
    monkeypatch.setattr(world.engine, "list_containers", lambda label: [])
    w.feed(world.event("destroy", "web-1"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"] and world.reloads == reloads
    assert [line.split(" detail=")[0] for line in world.lines("guard")] == [
        "event=guard service=web kept=3", "event=guard service=api kept=1"]
    monkeypatch.undo()
    world.engine.remove_container("web-1")
    w.feed(world.event("start", "web-2"))
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.routed() == ["web-2", "web-3", "api-1"]


def test_a_failed_discovery_keeps_the_config_and_retries(world):
    w = started(world)
    before = world.live()
    world.backend("web-4")
    world.engine.fail_on["list_containers"] = DockerUnavailable("cannot reach the Docker daemon at x: timed out")
    w.feed(world.event("start", "web-4"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert world.live() == before
    assert strip_took(world.lines("apply-failed")[-1]) == (
        'event=apply-failed reason=container-start error="cannot reach the Docker daemon at x: timed out" '
        "retry_in=1.00s")
    del world.engine.fail_on["list_containers"]
    world.clock.advance(1.0)
    w.step()
    assert "web-4" in world.routed()
    assert strip_took(world.lines("apply")[-1]) == "event=apply service=web reason=retry backends=4"


def test_a_rejected_config_keeps_the_last_good_one_with_backoff(world):
    w = started(world)
    before, reloads = world.live(), world.reloads
    world.reject("nginx: [emerg] unknown directive")
    world.backend("web-4")
    w.feed(world.event("start", "web-4"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    world.clock.advance(1.0)
    w.step()
    assert world.live() == before and world.reloads == reloads
    assert [line.split(" retry_in=")[1].split()[0] for line in world.lines("apply-failed")] == ["1.00s", "2.00s"]
    assert w.metrics.get("lbgen_watch_apply_failures_total") == 2
    world.reject(None)
    world.clock.advance(2.0)
    w.step()
    assert "web-4" in world.routed()


# --- the event stream going away ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["ends", "raises"])
def test_a_lost_event_stream_reconnects_with_backoff_and_resyncs(world, how):
    w = started(world)
    assert world.engine.opened.wait(2)
    world.engine.opened.clear()
    world.engine.end(END if how == "ends" else DockerUnavailable("cannot reach the Docker daemon at x: "
                                                                "Connection reset by peer"))
    w.step(timeout=2)
    assert not w.connected
    error = "the Docker event stream ended" if how == "ends" else \
        "cannot reach the Docker daemon at x: Connection reset by peer"
    assert world.lines("disconnected") == [f"event=disconnected error={json.dumps(error)} retry_in=0.50s"]
    # The daemon is down for a while: attempts back off.
    world.engine.fail_with = DockerUnavailable("cannot reach the Docker daemon at x: Connection refused")
    world.clock.advance(0.5)
    w.step()
    world.clock.advance(0.9)
    w.step()  # not yet: the next attempt is 1s after the last
    world.clock.advance(0.1)
    w.step()
    assert [line.split(" retry_in=")[1] for line in world.lines("connect-failed")] == ["1.00s", "2.00s"]
    # It comes back, with a container started meanwhile: re-synced.
    world.engine.fail_with = None
    world.backend("web-4")
    world.clock.advance(2.0)
    w.step()
    assert w.connected and world.lines("reconnected") == ["event=reconnected"]
    assert "web-4" in world.routed()
    assert strip_took(world.lines("apply")[-1]) == "event=apply service=web reason=resync backends=4"
    assert world.engine.opened.wait(2)
    assert len([c for c in world.engine.calls if c[0] == "events"]) == 2
    assert w.metrics.get("lbgen_watch_reconnects_total") == 1
    # Events flow again on the new stream.
    world.backend("web-5")
    world.engine.end(world.event("start", "web-5"))
    w.step(timeout=2)
    world.clock.advance(1.0)
    w.step()
    assert "web-5" in world.routed()


def test_startup_without_docker_retries(world):
    world.engine.fail_with = DockerUnavailable("cannot reach the Docker daemon at x: No such file or directory")
    w = world.watcher()
    w.start()
    w.step()
    assert not w.connected and world.live() is None
    world.engine.fail_with = None
    world.clock.advance(0.5)
    w.step()
    assert w.connected and world.routed() == ["web-1", "web-2", "web-3", "api-1"]


# --- the health loop ------------------------------------------------------------------------------------------

def test_health_loop_ejects_and_readmits_with_hysteresis(world):
    w = started(world, health=True, interval=5.0)
    world.answer("web-2", 503)
    pump(w)  # the first pass runs right after the sync
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]  # fall=2
    world.clock.advance(5.0)
    pump(w)
    assert world.routed() == ["web-1", "web-3", "api-1"]
    assert world.lines("eject") == ["event=eject service=web backend=web-2 fails=2"]
    assert strip_took(world.lines("apply")[-1]) == "event=apply service=web reason=health backends=2"
    metrics = w.metrics.text()
    assert 'lbgen_backend_ejected{backend="web-2",env="blue",service="web"} 1.0\n' in metrics
    assert 'lbgen_routed_backends{service="web"} 2.0\n' in metrics
    world.answer("web-2", 200)
    for _ in range(2):  # rise=2
        world.clock.advance(5.0)
        pump(w)
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]
    assert world.lines("readmit") == ["event=readmit service=web backend=web-2 passes=2"]
    # A line when a service's status changes, not on every pass.
    assert world.lines("health") == ["event=health service=web status=WARNING healthy=2/3 ejected=0",
                                     "event=health service=web status=OK healthy=3/3 ejected=1"]


def test_passes_overlap_up_to_a_bound_and_the_loop_sleeps_then(world):
    """A pass held up by a hung backend does not hold up the next one (due `interval` later); at most
    HEALTH_PASSES are out at once, and then the loop sleeps instead of spinning."""
    from lbgen.watch.loop import HEALTH_PASSES

    pending = []
    w = world.watcher(health=True, interval=5.0)
    w.spawn = lambda target, name: pending.append(target) if name == "lbgen-health" else None
    w.start()
    w.step()  # connect and sync
    w.step()  # start a pass; its checks do not finish
    assert w.health_running == 1 and len(pending) == 1
    world.clock.advance(5.0)
    w.step()  # the next pass starts on time beside it
    assert w.health_running == 2 and len(pending) == 2
    world.clock.advance(60.0)
    for _ in range(5):
        w.step()
    assert w.health_running == HEALTH_PASSES and len(pending) == HEALTH_PASSES
    assert w.wait_time() == 1.0, "passes in progress must not make the loop spin"
    world.clock.advance(5.0)
    pending[0]()
    w.step()  # its results are applied, and the next pass (due) starts
    assert len(pending) == HEALTH_PASSES + 1 and w.health_running == HEALTH_PASSES


def test_health_loop_never_empties_a_pool(world):
    w = started(world, health=True, interval=5.0)
    for name in ("web-1", "web-2", "web-3"):
        world.answer(name, 503)
    for _ in range(3):
        pump(w)
        world.clock.advance(5.0)
    assert world.routed() == ["web-1", "web-2", "web-3", "api-1"]
    assert world.lines("health")[-1] == "event=health service=web status=CRITICAL healthy=0/3 ejected=0"


# --- SIGHUP, stopping ----------------------------------------------------------------------------------

def test_reload_rereads_the_config_and_a_bad_one_is_ignored(world):
    w = started(world)
    world.config_text = CONFIG.replace("listen: 80", "listen: 81")
    w.request_reload()
    w.step()
    assert "listen 81 default_server;" in world.live_text()
    assert world.lines("config-reloaded") == ["event=config-reloaded source=lbgen.yaml"]
    assert [strip_took(line) for line in world.lines("apply")[-2:]] == [
        "event=apply service=web reason=config-reload backends=3",
        "event=apply service=api reason=config-reload backends=1"]
    world.config_text = "network: [\n"
    w.request_reload()
    w.step()
    assert "listen 81 default_server;" in world.live_text()
    assert world.lines("config-reload-failed")[0].startswith("event=config-reload-failed error=")


def test_run_returns_when_stopped(world):
    w = world.watcher()
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    assert world.engine.opened.wait(2)
    stop.set()
    w.wake()
    thread.join(2)
    assert not thread.is_alive()
    assert world.lines("stopped") == ["event=stopped"]


def test_a_bad_config_at_startup_raises(world):
    world.config_text = "network: [\n"
    with pytest.raises(ConfigError):
        world.watcher()
