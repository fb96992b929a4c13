"""While Swarm converges (a scale, an update, a task's container starting), watch polls the manager's tasks:
their states reach the manager with no event of their own, and tasks on other nodes send none at all."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lbgen.engine import SWARM_TASK_LABEL, Engine, ServiceInfo, TaskInfo

# The label of a Swarm task's container: its events arm the poll (the manager hears of the state later).
# A task is in a pool while it is in one of these states and Swarm wants it running (sources/swarm.py).
_LIVE = ("starting", "running")


@dataclass(frozen=True)
class PollResult:
    changed: bool  # which tasks are live, or wanted, differs from the last poll
    left: bool  # a task that was live and wanted no longer is: it must leave its pool now
    converging: bool  # a service is updating, or its live wanted tasks differ from its replica count


class TaskPoll:
    """Armed by a Swarm event, polls every `period` seconds; disarms once every labelled service has
    converged (after `settle` seconds at least: the manager acts on a change a moment after its event), or
    `window` seconds after the last arming while not converging, unless a rolling update is in progress."""

    def __init__(self, period: float = 0.5, settle: float = 3.0, window: float = 120.0) -> None:
        self.period = period
        self.settle = settle
        self.window = window
        self.next_at: float | None = None
        self.armed_at = 0.0
        self.last: frozenset[tuple[str, str, str]] | None = None

    def arm(self, now: float) -> None:
        self.armed_at = now
        if self.next_at is None:
            self.next_at = now + self.period

    def deadline(self) -> float | None:
        return self.next_at

    def due(self, now: float) -> bool:
        return self.next_at is not None and now >= self.next_at

    def poll(self, engine: Engine, label: str, now: float) -> PollResult:
        """Read the tasks of the services carrying `label`; schedule the next poll or disarm."""
        services = engine.list_services(label)
        tasks = engine.list_tasks(sorted(s.id for s in services)) if services else []
        result = self.observe(services, tasks)
        updating = any(s.updating for s in services)
        since = now - self.armed_at
        if updating or (result.converging and since < self.window) or since < self.settle:
            self.next_at = now + self.period
        else:
            self.next_at = None
        return result

    def observe(self, services: Sequence[ServiceInfo], tasks: Sequence[TaskInfo]) -> PollResult:
        live = frozenset((t.id, t.state, t.desired_state) for t in tasks if t.state in _LIVE)
        wanted = {t.id for t in tasks if t.state in _LIVE and t.desired_state == "running"}
        before = self.last
        self.last = live
        stopping = any(t.state in _LIVE and t.desired_state != "running" for t in tasks)
        gone = before is not None and any(tid not in wanted for tid, _, desired in before if desired == "running")
        left = live != before and (stopping or gone)
        converging = any(s.updating for s in services) or any(
            s.replicas is not None
            and sum(1 for t in tasks if t.service_id == s.id and t.id in wanted and t.state == "running") != s.replicas
            for s in services) or stopping
        return PollResult(changed=live != before, left=left, converging=converging)
