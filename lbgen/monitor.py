"""One pass of active health checks over every service's active env, hysteresis across passes, and the
report in the formats monitoring systems read: the monitoring-plugin text and exit status of Nagios,
Icinga, Sensu and check_mk, JSON, and Prometheus text format.

This is the only module that decides a backend's ejection (`fold`); `lbgen health --apply` and watch
mode both go through it. Which backends a pool holds, fail-open included, stays routing's decision.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence

from lbgen.config import Config, HealthConfig
from lbgen.core import ApplyResult, Core, World
from lbgen.drift import Drift, find_drift
from lbgen.errors import LbgenError
from lbgen.events import Event, event
from lbgen.expiry import CertHealth, served_certs
from lbgen.health import MAX_PARALLEL_CHECKS, Checker, CheckResult
from lbgen.model import CRITICAL as CRITICAL, OK as OK, STATUS_NAMES as STATUS_NAMES  # re-exported
from lbgen.model import UNKNOWN as UNKNOWN, WARNING as WARNING
from lbgen.model import Backend, HealthCount, Inventory
from lbgen.render import parse_meta
from lbgen.routing import build_pools
from lbgen.state import State
from lbgen.timings import Timings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

PLUGIN_NAME = "LBGEN"


# --- what to check -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceTargets:
    """The backends of one service that a pass checks: its active env's candidates, ejected ones included."""

    name: str
    env: str | None
    health: HealthConfig
    backends: tuple[Backend, ...]


def only(config: Config, services: Collection[str] | None) -> Config:
    """`config` restricted to `services` (all when None), for --service."""
    if services is None:
        return config
    return dataclasses.replace(config, services={n: s for n, s in config.services.items() if n in services})


def targets_for(config: Config, inventory: Inventory, active: Mapping[str, str | None],
                exclude: Collection[str] = ()) -> tuple[ServiceTargets, ...]:
    """What each service's pool could hold (routing's rules, before ejection), minus `exclude`d ids. Pure."""
    pools = build_pools(config, inventory, active, ())
    return tuple(
        ServiceTargets(p.service, p.active_env, config.services[p.service].health,
                       tuple(b for b in p.servers if b.id not in exclude))
        for p in pools
    )


def run_checks(services: Sequence[ServiceTargets], checker: Checker,
               max_parallel: int = MAX_PARALLEL_CHECKS) -> dict[str, tuple[CheckResult, ...]]:
    """One check of every backend of every service, all in one concurrent batch, so a pass takes about
    one `timeout` however many backends hang (up to `max_parallel` of them)."""
    jobs = [(s.name, b, s.health) for s in services for b in s.backends]
    results: dict[str, list[CheckResult]] = {s.name: [] for s in services}
    if jobs:
        with ThreadPoolExecutor(max_workers=min(max_parallel, len(jobs)), thread_name_prefix="lbgen-health") as pool:
            for (name, _, _), result in zip(jobs, pool.map(lambda j: checker.check(j[1], j[2]), jobs)):
                results[name].append(result)
    return {name: tuple(r) for name, r in results.items()}


# --- hysteresis --------------------------------------------------------------------------------------

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


def advance(counts: Mapping[str, HealthCount], results: Iterable[CheckResult], present: Collection[str],
            health: HealthConfig) -> tuple[dict[str, HealthCount], list[tuple[str, str, str, int]]]:
    """One service's counts after one pass. Pure.

    `counts` maps backend id -> HealthCount. A failed check adds to `fails` and resets `passes`; `fall`
    failures in a row eject. While ejected, `rise` passes in a row re-admit. Ids not in `present` (gone
    from the pool's candidates) are dropped; backends without results keep their counts. Only backends
    with something to remember are kept (a failure or an ejection), and counts stop at `fall` / `rise`,
    so a steady pass changes nothing and need not be written.
    Returns the new counts and the transitions as (id, name, action, count).
    """
    new = {bid: c for bid, c in counts.items() if bid in present}
    changes: list[tuple[str, str, str, int]] = []
    for r in results:
        bid, name = r.backend.id, r.backend.name
        if bid not in present:
            continue
        c = new.get(bid) or HealthCount(name)
        if r.ok:
            passes = min(c.passes + 1, health.rise)
            readmit = c.ejected and passes >= health.rise
            if readmit:
                changes.append((bid, name, "readmit", passes))
            c = HealthCount(name, fails=0, passes=passes, ejected=c.ejected and not readmit)
        else:
            fails = min(c.fails + 1, health.fall)
            eject = not c.ejected and fails >= health.fall
            if eject:
                changes.append((bid, name, "eject", fails))
            c = HealthCount(name, fails=fails, passes=0, ejected=c.ejected or eject)
        if c.ejected or c.fails:
            new[bid] = c
        else:
            new.pop(bid, None)
    return new, changes


def fold(state: State, services: Sequence[ServiceTargets],
         results: Mapping[str, Sequence[CheckResult]]) -> list[Transition]:
    """Fold one pass's results into `state.health` (mutating it); the ejections and re-admissions.

    `services` is what the pools could hold now (possibly newer than the checks); services not in it are
    left alone, so `--service web` touches only web's counts.
    """
    transitions: list[Transition] = []
    for s in services:
        present = {b.id for b in s.backends}
        counts, changes = advance(state.health.get(s.name, {}), results.get(s.name, ()), present, s.health)
        if counts:
            state.health[s.name] = counts
        else:
            state.health.pop(s.name, None)
        transitions += [Transition(s.name, name, bid, action, n) for bid, name, action, n in changes]
    return transitions


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


def build_report(config: Config, inventory: Inventory, active: Mapping[str, str | None],
                 checked: Sequence[ServiceTargets], results: Mapping[str, Sequence[CheckResult]], state: State,
                 checked_at: float, took: float, transitions: Sequence[Transition] = (),
                 applied: dict[str, Any] | None = None, error: str | None = None,
                 drift: Mapping[str, tuple[Drift, ...]] | None = None,
                 assumed: Collection[str] = ()) -> HealthReport:
    """The report of a pass: each checked backend's result, and whether routing leaves it out of its pool
    given `inventory`, `active` and `state` (which may be newer than the checks)."""
    names = [s.name for s in checked]
    subset = only(config, names)
    candidates = {p.service: {b.id for b in p.servers} for p in build_pools(subset, inventory, active, ())}
    routed = {p.service: {b.id for b in p.servers} for p in build_pools(subset, inventory, active, state.ejected_ids())}
    out = []
    for s in checked:
        out_of_pool = candidates[s.name] - routed[s.name]
        counts = state.health.get(s.name, {})
        by_id = {r.backend.id: r for r in results.get(s.name, ())}
        rows = []
        for b in s.backends:
            r = by_id.get(b.id)
            c = counts.get(b.id) or HealthCount(b.name)
            rows.append(BackendHealth(b, bool(r and r.ok), r.detail if r else "not checked",
                                      ejected=b.id in out_of_pool, fails=c.fails, passes=c.passes))
        fail_open = any(c.ejected and bid in routed[s.name] for bid, c in counts.items())
        out.append(ServiceHealth(s.name, s.env, tuple(rows), fail_open, s.health, (drift or {}).get(s.name, ()),
                                 s.name in assumed))
    return HealthReport(tuple(out), checked_at, took, tuple(transitions), applied, error)


# --- the pass, as `lbgen health` runs it --------------------------------------------------------------

def run_health(core: Core, service: str | None = None, *, apply: bool = False, lock_wait: float = 30.0,
               wall: Callable[[], float] = time.time) -> HealthReport:
    """One pass: read the world, check every backend of each service's active env, report.

    With `apply`, under the proxy's lock: `settle` the results (hysteresis, saved counts, converge). An
    error before the checks raises; an error while applying is reported (UNKNOWN) with the checks' results.
    """
    names = [core.config.service(service).name] if service is not None else list(core.config.services)
    config = only(core.config, names)
    checked_at = wall()
    started = core.clock()
    world = core.repair(core.read_world(), lock_wait)
    services = targets_for(config, world.inventory, world.active)
    results = run_checks(services, core.checker)
    transitions: list[Transition] = []
    applied = None
    error = None
    if apply:
        try:
            with core.lock("health --apply", wait=lock_wait):
                transitions, result, world = settle(core, config, results)
            applied = {"changed": result.changed, "generation": result.generation}
        except LbgenError as e:
            error = f"--apply failed: {e}"
    # What the live config routes, against what lbgen would route now: after an apply they are the same.
    drift = {} if applied is not None else find_drift(
        parse_meta(world.live or ""), build_pools(config, world.inventory, world.active, world.state.ejected_ids()),
        world.inventory)
    report = build_report(config, world.inventory, world.active, services, results, world.state, checked_at,
                          core.clock() - started, transitions, applied, error, drift, tuple(world.assumed))
    return dataclasses.replace(report, certs=served_certs(config, world.live, checked_at))


def settle(core: Core, config: Config, results: Mapping[str, Sequence[CheckResult]],
           inventory: Inventory | None = None,
           timings: Timings | None = None) -> tuple[list[Transition], ApplyResult, World]:
    """Under the lock: fold a pass's results into the counts as they are now (another host may have run a
    pass, or a switch changed the active env, while the checks ran), save them if they changed, and
    converge. `lbgen health --apply` and watch both end here."""
    world = core.read_world(inventory=inventory, timings=timings)
    state = world.state
    before = {svc: dict(counts) for svc, counts in state.health.items()}
    transitions = fold(state, targets_for(config, world.inventory, world.active), results)
    if state.health != before:
        core.store.save(state)
    for t in transitions:
        core.log(t.event())
    return transitions, core.converge(world.inventory, timings), world


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
