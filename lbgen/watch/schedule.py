"""When watch checks each service's health: at its own `health.interval`, or every `--interval` when one
is given (`HealthSchedule`, pure: the caller passes the time); and the latest result per service.
`HealthRun` is a pass whose checks are out."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

from lbgen.monitor import ServiceTargets
from lbgen.report import HealthReport, ServiceHealth
from lbgen.config import ServiceConfig


class HealthSchedule:
    """Per service, when its next check is due. A service not scheduled yet is due at once."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval  # the --interval override, or None: each service's health.interval
        self.due: dict[str, float] = {}
        self.latest: dict[str, ServiceHealth] = {}

    def interval_of(self, service: ServiceConfig) -> float:
        return self.interval if self.interval is not None else service.health.interval

    def due_now(self, services: Mapping[str, ServiceConfig], now: float) -> list[str]:
        """The services whose check is due at `now`."""
        return [name for name in services if self.due.get(name, now) <= now]

    def checked(self, services: Mapping[str, ServiceConfig], names: Sequence[str], now: float) -> float | None:
        """`names` start a check at `now`: schedule their next; return when the next service is due."""
        for name in names:
            self.due[name] = now + self.interval_of(services[name])
        self.due = {k: v for k, v in self.due.items() if k in services}
        return min(self.due.values(), default=None)

    def reset(self) -> None:
        """Every service is due at once (after a (re)sync)."""
        self.due = {}

    def reconfigured(self, old: Mapping[str, ServiceConfig], new: Mapping[str, ServiceConfig]) -> None:
        """lbgen.yaml was re-read: a new service, or one whose health settings changed, is due at once."""
        self.due = {k: v for k, v in self.due.items() if k in old and k in new and old[k].health == new[k].health}

    def merged(self, report: HealthReport, services: Sequence[str]) -> HealthReport:
        """`report` (of the services that were due) with every other service's latest result, in config
        order: what the metrics show."""
        self.latest = {k: v for k, v in self.latest.items() if k in services}
        self.latest.update({s.name: s for s in report.services})
        order = list(services)
        merged = tuple(sorted(self.latest.values(), key=lambda s: order.index(s.name)))
        return dataclasses.replace(report, services=merged)


@dataclass
class HealthRun:
    """A health pass whose checks are running (or done) outside the loop."""

    services: tuple[ServiceTargets, ...]
    checked_at: float
    started: float
