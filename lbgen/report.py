"""What a health pass found, in the forms monitoring systems read: the monitoring-plugin text and exit
status (Nagios, Icinga, Sensu, check_mk), JSON, and Prometheus (a prometheus_client collector, and the
node_exporter textfile). Records only: lbgen.monitor runs the pass and builds them."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from lbgen.config import HealthConfig
from lbgen.drift import Drift
from lbgen.events import Event, event
from lbgen.expiry import CertHealth
from lbgen.model import CRITICAL, OK, STATUS_NAMES, UNKNOWN, WARNING, Backend

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

PLUGIN_NAME = "LBGEN"


@dataclass(frozen=True)
class Transition:
    """A backend ejected from its pool or re-admitted to it by a health pass."""

    service: str
    backend: str  # its name
    id: str
    action: str  # "eject" or "readmit"
    count: int  # the consecutive failed (eject) or passed (readmit) checks that decided it

    def describe(self) -> str:
        if self.action == "eject":
            return f"ejected {self.backend} from {self.service} after {self.count} failed checks in a row"
        return f"re-admitted {self.backend} to {self.service} after {self.count} passed checks in a row"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def event(self) -> Event:
        return event(self.action, service=self.service, backend=self.backend,
                     **{"fails" if self.action == "eject" else "passes": self.count})



# --- the report --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendHealth:
    backend: Backend
    healthy: bool  # passed this pass's check
    detail: str
    ejected: bool  # out of the pool now (an ejection routing kept because of fail-open does not count)
    fails: int = 0
    passes: int = 0

    def to_dict(self) -> dict[str, Any]:
        b = self.backend
        return {"name": b.name, "id": b.id, "env": b.env, "address": b.address, "port": b.port,
                "healthy": self.healthy, "detail": self.detail, "ejected": self.ejected,
                "fails": self.fails, "passes": self.passes}


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    active_env: str | None
    backends: tuple[BackendHealth, ...]
    fail_open: bool = False  # every backend was ejected, so routing kept them all
    health: HealthConfig = field(default_factory=HealthConfig)
    drift: tuple[Drift, ...] = ()  # where the live config differs from what runs (see lbgen.drift)
    assumed: bool = False  # no switch on record although several envs are present: default_env is assumed

    @property
    def healthy(self) -> int:
        return sum(b.healthy for b in self.backends)

    @property
    def unhealthy(self) -> int:
        return len(self.backends) - self.healthy

    @property
    def ejected(self) -> int:
        return sum(b.ejected for b in self.backends)

    @property
    def status(self) -> int:
        if self.healthy == 0:
            return CRITICAL
        return WARNING if self.unhealthy or self.drift or self.assumed else OK

    def to_dict(self) -> dict[str, Any]:
        return {"active_env": self.active_env, "active_env_recorded": not self.assumed,
                "status": STATUS_NAMES[self.status], "healthy": self.healthy,
                "unhealthy": self.unhealthy, "ejected": self.ejected, "fail_open": self.fail_open,
                "backends": [b.to_dict() for b in self.backends], "drift": [d.to_dict() for d in self.drift]}


@dataclass(frozen=True)
class HealthReport:
    """One health pass, and what --apply did with it. `error` set means UNKNOWN (could not check or apply)."""

    services: tuple[ServiceHealth, ...] = ()
    checked_at: float = 0.0  # wall-clock time of the pass
    took: float = 0.0
    transitions: tuple[Transition, ...] = ()
    applied: dict[str, Any] | None = None  # {"changed": bool, "generation": str} after --apply
    error: str | None = None
    certs: tuple[CertHealth, ...] = ()  # certificates the live config serves

    @classmethod
    def unknown(cls, message: str, checked_at: float | None = None) -> HealthReport:
        return cls(checked_at=time.time() if checked_at is None else checked_at, error=message)

    @property
    def status(self) -> int:
        if self.error is not None:
            return UNKNOWN
        return max([s.status for s in self.services] + [c.status for c in self.certs], default=OK)

    @property
    def exit_code(self) -> int:
        return self.status

    def summary(self) -> str:
        total = sum(len(s.backends) for s in self.services)
        healthy = sum(s.healthy for s in self.services)
        count = f"{len(self.services)} service{'' if len(self.services) == 1 else 's'}"
        figures = f"{count}, {healthy}/{total} backends healthy"
        drifted = sum(len(s.drift) for s in self.services)
        if drifted:
            figures += f", live config differs from what runs for {drifted} backend{'' if drifted == 1 else 's'}"
        assumed = [s.name for s in self.services if s.assumed]
        if assumed:
            figures += f", active env assumed (no switch on record) for {', '.join(assumed)}"
        if self.error is not None:
            return f"{self.error}; {figures}" if self.services else self.error
        down = [s for s in self.services if s.status == CRITICAL]
        expiring = [c for c in self.certs if c.status != OK]
        if expiring:
            soonest = min(expiring, key=lambda c: c.days_left)
            figures = (f"certificate of {soonest.service} "
                       f"{'expired' if soonest.days_left <= 0 else f'expires in {soonest.days_left:.1f} days'}; "
                       + figures)
        if down:
            names = ", ".join(s.name for s in down)
            return f"{names} {'has' if len(down) == 1 else 'have'} no healthy backend; {figures}"
        return figures

    def perfdata(self) -> str:
        parts = []
        for s in self.services:
            n = len(s.backends)
            parts += [f"{s.name}_healthy={s.healthy};;;0;{n}", f"{s.name}_unhealthy={s.unhealthy};;;0;{n}",
                      f"{s.name}_ejected={s.ejected};;;0;{n}", f"{s.name}_drift={len(s.drift)};;;0"]
        parts += [f"{c.service}_cert_days={c.days_left:.2f};{c.warn_days};3" for c in self.certs]
        return " ".join(parts)

    def nagios(self) -> str:
        """The monitoring-plugin output: a summary line with performance data, then details."""
        perf = self.perfdata()
        lines = [f"{PLUGIN_NAME} {STATUS_NAMES[self.status]} - {self.summary()}" + (f" | {perf}" if perf else "")]
        for s in self.services:
            extra = f", {s.ejected} ejected" if s.ejected else ""
            extra += ", all kept (fail open)" if s.fail_open else ""
            lines.append(f"{s.name}: {STATUS_NAMES[s.status]}, env {s.active_env or '-'}, "
                         f"{s.healthy}/{len(s.backends)} healthy{extra}")
            if not s.backends:
                lines.append(f"{s.name}: no backends to route to in env {s.active_env or '-'}")
            for b in s.backends:
                if b.healthy and not b.ejected:
                    continue
                where = f"{b.backend.name} ({b.backend.endpoint})"
                if b.healthy:
                    lines.append(f"{s.name}: {where} healthy again ({b.detail}), ejected until "
                                 f"{s.health.rise} passed checks in a row ({b.passes} so far)")
                else:
                    lines.append(f"{s.name}: {where} UNHEALTHY: {b.detail}" + (" (ejected)" if b.ejected else ""))
            lines += [f"{s.name}: DRIFT {d.describe()} (run lbgen apply)" for d in s.drift]
            if s.assumed:
                lines.append(f"{s.name}: active env {s.active_env or '-'} is ASSUMED (default_env): no switch on "
                             f"record (never switched, or lbgen's state holder was deleted)")
        lines += [c.describe() for c in self.certs]
        lines += [t.describe() for t in self.transitions]
        if self.applied is not None:
            word = "applied" if self.applied.get("changed") else "unchanged"
            lines.append(f"{word} generation={self.applied.get('generation')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": STATUS_NAMES[self.status], "exit_code": self.exit_code, "summary": self.summary(),
            "checked_at": _iso(self.checked_at), "took": round(self.took, 3), "error": self.error,
            "services": {s.name: s.to_dict() for s in self.services},
            "transitions": [t.to_dict() for t in self.transitions], "applied": self.applied,
            "certificates": {c.service: c.to_dict() for c in self.certs},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def prometheus(self) -> str:
        """The figures in Prometheus text format (for node_exporter's textfile collector, and watch's /metrics)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry()).decode()

    def registry(self) -> CollectorRegistry:
        """A private prometheus_client registry holding only this report's figures."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(HealthCollector(self))
        return registry

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """Write the figures to `path` with prometheus_client's `write_to_textfile`: a temporary file beside it
        (not ending in .prom, so the textfile collector never reads it half-written), then a rename."""
        from prometheus_client import write_to_textfile

        path = os.fspath(path)
        write_to_textfile(path, self.registry())
        os.chmod(path, 0o644)  # node_exporter runs as another user; cron's umask may be 077


class HealthCollector:
    """A prometheus_client collector: one health report's figures as gauge families, built at each collect."""

    def __init__(self, report: HealthReport) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        def gauge(name: str, help_text: str, labels: Sequence[str],
                  samples: Iterable[tuple[Sequence[str], float]]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            return family

        r = self.report
        backend = ("service", "env", "backend")
        yield gauge("lbgen_check_status",
                    "Status of the last lbgen health pass: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
                    (), [((), r.status)])
        yield gauge("lbgen_check_timestamp_seconds", "When the last lbgen health pass ran (Unix time).",
                    (), [((), r.checked_at)])
        yield gauge("lbgen_check_duration_seconds", "How long the last lbgen health pass took.", (), [((), r.took)])
        yield gauge("lbgen_service_status", "Per service: 0 OK, 1 WARNING, 2 CRITICAL.",
                    ("service",), [((s.name,), s.status) for s in r.services])
        yield gauge("lbgen_service_backends",
                    "Backends of the active env by state: healthy or unhealthy in the last check, "
                    "ejected from the pool.",
                    ("service", "state"),
                    [((s.name, state), value) for s in r.services
                     for state, value in (("healthy", s.healthy), ("unhealthy", s.unhealthy), ("ejected", s.ejected))])
        yield gauge("lbgen_backend_up", "1 when the backend passed its last health check, else 0.", backend,
                    [(_backend_labels(s, b), int(b.healthy)) for s in r.services for b in s.backends])
        yield gauge("lbgen_backend_ejected", "1 when lbgen has taken the backend out of its pool, else 0.", backend,
                    [(_backend_labels(s, b), int(b.ejected)) for s in r.services for b in s.backends])
        yield gauge("lbgen_tls_cert_expiry_timestamp_seconds",
                    "When the certificate the proxy serves for the service expires (Unix time).",
                    ("service", "file"), [((c.service, c.file), c.not_after) for c in r.certs])


def _backend_labels(s: ServiceHealth, b: BackendHealth) -> tuple[str, str, str]:
    return (s.name, b.backend.env or "", b.backend.name)



def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
