"""watch's health checks run per service at each service's own `health.interval` (a pass checks the
services that are due), or every `--interval` when one is given. Fake engine, fake proxy, fake clock."""
from __future__ import annotations

from typing import Iterator

import pytest

from test_monitor import CONFIG
from test_watch import WatchWorld, pump, started

# web every 1s (fall 2), api every 3s.
SCHEDULED = (CONFIG.replace("health: {path: /health, timeout: 1s,", "health: {path: /health, interval: 1s, timeout: 1s,")
             .replace("health: {path: /ping, timeout: 1s,", "health: {path: /ping, interval: 3s, timeout: 1s,"))


@pytest.fixture
def world() -> Iterator[WatchWorld]:
    w = WatchWorld(SCHEDULED)
    yield w
    w.engine.close_all()


def checked(world: WatchWorld) -> tuple[int, int]:
    """How many checks web and api got so far (then forget them)."""
    web = sum(url.endswith("/health") for url in world.gets)
    api = sum(url.endswith("/ping") for url in world.gets)
    world.gets.clear()
    return web, api


def test_each_service_is_checked_at_its_own_interval(world):
    assert "interval: 1s" in SCHEDULED and "interval: 3s" in SCHEDULED
    w = started(world, health=True)
    world.gets.clear()
    pump(w)  # the first pass, right after the sync: every service
    assert checked(world) == (3, 1)
    seen = []
    for _ in range(6):
        world.clock.advance(1.0)
        pump(w)
        seen.append(checked(world))
    assert seen == [(3, 0), (3, 0), (3, 1), (3, 0), (3, 0), (3, 1)]
    assert w.wait_time() == pytest.approx(1.0)  # web is due again in 1s


def test_an_explicit_interval_checks_every_service_together(world):
    w = started(world, health=True, interval=5.0)
    world.gets.clear()
    pump(w)
    assert checked(world) == (3, 1)
    for _ in range(4):
        world.clock.advance(1.0)
        pump(w)
    assert checked(world) == (0, 0)
    world.clock.advance(1.0)
    pump(w)
    assert checked(world) == (3, 1)


def test_a_hung_backend_leaves_its_pool_within_interval_times_fall(world):
    w = started(world, health=True)
    pump(w)
    hung_at = world.clock()
    world.answer("web-2", "timeout")
    while "web-2" in world.routed():
        assert world.clock() - hung_at <= 1.0 * 2, "not ejected within interval x fall"
        world.clock.advance(0.25)
        pump(w)
    assert world.lines("eject") == ["event=eject service=web backend=web-2 fails=2"]


def test_a_pass_of_one_service_keeps_the_others_in_the_metrics(world):
    w = started(world, health=True)
    pump(w)
    world.clock.advance(1.0)
    pump(w)  # web only
    metrics = w.metrics.text()
    assert 'lbgen_service_status{service="web"}' in metrics
    assert 'lbgen_service_status{service="api"}' in metrics


def test_a_reload_that_changes_an_interval_reschedules_that_service(world):
    w = started(world, health=True)
    pump(w)
    checked(world)
    world.config_text = SCHEDULED.replace("interval: 3s", "interval: 10s")
    w.request_reload()
    pump(w)
    assert checked(world) == (0, 1)  # api's settings changed: checked at once; web keeps its schedule
    world.clock.advance(3.0)
    pump(w)
    assert checked(world) == (3, 0)
