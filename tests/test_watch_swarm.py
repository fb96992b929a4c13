"""watch follows Swarm through the fake engine: a service event arms a task poll that routes tasks whose
state reaches the manager with no event (on other nodes, or a local task becoming running after its
container's start event), takes a task out at once when Swarm's desired state for it turns to shutdown,
keeps polling while a rolling update runs and stops once the services have converged."""
from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from lbgen.engine import EngineEvent, TaskInfo
from lbgen.watch.swarm_poll import TaskPoll
from test_watch import WatchWorld, started

LABELS = {"lbgen.service": "web", "lbgen.env": "blue", "lbgen.port": "8080"}


@pytest.fixture
def world() -> Iterator[WatchWorld]:
    w = WatchWorld()
    w.engine.add_service("web-blue", labels=LABELS, replicas=1)
    w.engine.add_task("web-blue", 1, node="node-2", container=False)
    yield w
    w.engine.close_all()


def set_task(world: WatchWorld, task: TaskInfo, **changes: str) -> TaskInfo:
    new = dataclasses.replace(task, **changes)
    world.engine.tasks = [new if t.id == task.id else t for t in world.engine.tasks]
    return new


def service_event(world: WatchWorld, action: str = "service-update") -> EngineEvent:
    svc = world.engine.services[next(iter(world.engine.services))]
    return EngineEvent(action, svc.id, svc.name, {"lbgen.service": ""})


def tasks_routed(world: WatchWorld) -> list[str]:
    return [name for name in world.routed() if name.startswith("web-blue.")]


def scale(world: WatchWorld, replicas: int) -> None:
    svc = next(iter(world.engine.services.values()))
    world.engine.services[svc.id] = dataclasses.replace(svc, replicas=replicas)


def test_a_task_on_another_node_is_routed_by_the_poll_once_it_runs(world):
    w = started(world)
    assert len(tasks_routed(world)) == 1
    scale(world, 2)
    task = world.engine.add_task("web-blue", 2, node="node-2", container=False, state="pending")
    w.feed(service_event(world))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert len(tasks_routed(world)) == 1  # pending: not routed; no further event will come from node-2
    set_task(world, task, state="running")
    world.clock.advance(0.5)
    w.step()  # the poll sees it running
    world.clock.advance(0.1)
    w.step()
    assert len(tasks_routed(world)) == 2
    assert world.lines("apply")[-1].startswith("event=apply service=web reason=swarm-tasks backends=")


def test_a_local_task_is_routed_when_the_manager_says_running_after_its_containers_start(world):
    w = started(world)
    scale(world, 2)
    task = world.engine.add_task("web-blue", 2, state="starting")  # the container runs, the manager lags
    w.feed(world.event("start", f"web-blue.2.{task.id}"))
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert len(tasks_routed(world)) == 1
    set_task(world, task, state="running")
    world.clock.advance(0.5)
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert len(tasks_routed(world)) == 2


def test_a_task_leaves_its_pool_when_its_desired_state_turns_shutdown_before_it_stops(world):
    second = world.engine.add_task("web-blue", 2, node="node-2", container=False)
    scale(world, 2)
    w = started(world)
    assert len(tasks_routed(world)) == 2
    w.feed(service_event(world))  # the scale-down's event comes before the manager marks the task
    w.step()
    world.clock.advance(0.1)
    w.step()
    assert len(tasks_routed(world)) == 2
    scale(world, 1)
    set_task(world, second, desired_state="shutdown")  # still running: Swarm has not stopped it yet
    world.clock.advance(0.5)
    w.step()  # the poll: applied at once, no debounce
    assert len(tasks_routed(world)) == 1
    assert world.lines("apply")[-1].startswith("event=apply service=web reason=swarm-tasks backends=4")  # web-1..3 and one task


def test_the_poll_stops_once_converged_and_keeps_going_during_a_rolling_update(world):
    w = started(world)
    assert w.task_poll.deadline() is None  # nothing happened: no polling
    w.feed(service_event(world))
    w.step()
    for _ in range(10):  # 5s: past the settle time, everything converged
        world.clock.advance(0.5)
        w.step()
    assert w.task_poll.deadline() is None
    polls = sum(1 for c in world.engine.calls if c[0] == "list_tasks")
    svc = next(iter(world.engine.services.values()))
    world.engine.services[svc.id] = dataclasses.replace(svc, updating=True)
    w.feed(service_event(world))
    w.step()
    for _ in range(20):  # 10s of a rolling update that converges by count all along: polled throughout
        world.clock.advance(0.5)
        w.step()
    assert w.task_poll.deadline() is not None
    assert sum(1 for c in world.engine.calls if c[0] == "list_tasks") - polls >= 20
    world.engine.services[svc.id] = dataclasses.replace(svc, updating=False)
    world.clock.advance(0.5)
    w.step()
    assert w.task_poll.deadline() is None


def test_a_service_that_cannot_converge_is_polled_for_the_window_only():
    poll = TaskPoll(period=0.5, settle=3.0, window=10.0)
    world = WatchWorld()
    world.engine.add_service("web-blue", labels=LABELS, replicas=3)  # never more than one task
    world.engine.add_task("web-blue", 1)
    poll.arm(0.0)
    now = 0.0
    while poll.due(now + 0.5) and now < 60:
        now += 0.5
        assert poll.poll(world.engine, "lbgen.service", now).converging
    assert 10.0 <= now <= 10.5
    world.engine.close_all()
