"""`Lbgen`: lbgen as a Python library, the typed API a deployment script (and every CLI command) calls.

Each method is one user-level operation; the external systems come in through the constructor, so tests
and scripts can pass their own. `from lbgen import Lbgen, load_config` is the way in.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from lbgen.config import Config
from lbgen.core import ApplyResult, Core
from lbgen.engine import Engine
from lbgen.errors import ConfigError, UsageError
from lbgen.events import Event, EventSink, event
from lbgen.health import Checker, GateProgress, HttpGet, http_get
from lbgen.model import HistoryEntry, Inventory
from lbgen.render import Rendered
from lbgen.sources import Source
from lbgen.timings import Timings

if TYPE_CHECKING:  # each operation's module is imported when it runs: `lbgen apply` starts without them
    from lbgen.analysis import Thresholds
    from lbgen.doctor import DoctorReport
    from lbgen.maintenance import MaintenanceResult
    from lbgen.progressive import Window
    from lbgen.report import HealthReport
    from lbgen.status import StatusReport
    from lbgen.switch import SwitchResult

ProgressCallback = Callable[[GateProgress], None]


def stderr_log(e: Event) -> None:
    print(e.human(), file=sys.stderr, flush=True)


def parse_env_overrides(items: Iterable[str]) -> dict[str, str]:
    """`["web=green", ...]` -> `{"web": "green"}` (render's `--env`)."""
    overrides = {}
    for item in items:
        name, sep, env = item.partition("=")
        if not sep or not name or not env:
            raise UsageError(f"--env {item!r}: expected SERVICE=ENV")
        overrides[name] = env
    return overrides


class Lbgen:
    """One proxy and its services, as lbgen.yaml describes them.

        lb = Lbgen(load_config("lbgen.yaml"))
        lb.switch("green", service="web", timeout=120)
    """

    def __init__(self, config: Config, engine: Engine | None = None, *, source: Source | None = None,
                 checker: Checker | None = None, get: HttpGet = http_get,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: EventSink = stderr_log, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall  # wall-clock time, for the analysis windows read from the proxy's log
        self.core = Core(config, engine, source=source, checker=checker, get=get, clock=clock, sleep=sleep, log=log)

    @property
    def config(self) -> Config:
        return self.core.config

    def discover(self) -> Inventory:
        """The backends discovery finds now (skipped containers are logged as warnings)."""
        return self.core.discover()

    def render(self, overrides: Mapping[str, str] | None = None, inventory: Inventory | None = None) -> Rendered:
        """What would go live now. With an `inventory` (render --from-file) Docker is never contacted and
        only `overrides` and the config's defaults decide the active envs."""
        for name in overrides or {}:
            if name not in self.config.services:
                raise UsageError(f"--env {name}=...: no service {name!r} in {self.config.source}")
        if inventory is not None:
            return self.core.render_for(inventory, dict(overrides or {}))
        return self.core.desired(self.core.read_world(), overrides)

    def apply(self, *, dry_run: bool = False, lock_wait: float = 30.0) -> ApplyResult:
        """Bring the live proxy to what render() gives; a byte-identical config is left alone."""
        timings = Timings(self.core.clock)
        if dry_run:
            world = self.core.read_world(timings=timings)
            with timings.phase("render"):
                rendered = self.core.desired(world)
            return ApplyResult(changed=world.live != rendered.text, generation=rendered.generation,
                               diff=self.core.diff(world.live, rendered), dry_run=True, warnings=rendered.warnings,
                               notes=world.notes, timings=timings.finish().as_dict())
        with self.core.locked("apply", timings, wait=lock_wait):
            return self.core.converge(timings=timings)

    def switch(self, env: str, service: str | None = None, *, timeout: float = 60.0,
               min_healthy: str | None = None, force: bool = False, dry_run: bool = False,
               on_progress: ProgressCallback | None = None, lock_wait: float = 30.0,
               stop_old: bool = False, drain: float = 0.0, weight: int | None = None,
               steps: tuple[int, ...] | None = None, step_time: float = 60.0, analysis: float | None = None,
               thresholds: Thresholds | None = None, on_window: Callable[[Window], None] | None = None,
               sticky: str | None = None) -> SwitchResult:
        """Health-gated switch of `service` to `env`: gate, swap, verify, record. With `stop_old`, the old
        env's containers are stopped `drain` seconds after a switch that changed something.

        Progressive delivery: `weight` (1-99) sends that percent of requests to `env` and keeps the active
        env (a canary); `steps` walks canary weights (100 promotes), analysing each for `step_time`
        seconds; `analysis` analyses `env` for that many seconds after a full switch. Analyses judge the
        proxy's own figures against `thresholds` (default: Thresholds()). `sticky="cookie"` (with `weight`
        or `steps`): a client stays on the env that served it while the canary's weight does not go down.

        Raises HealthGateFailed (nothing changed), ReloadFailed (the previous config restored), LockHeld,
        AnalysisFailed (a breach: all traffic back on the previous env)."""
        from lbgen.analysis import Thresholds
        from lbgen.model import Outcome
        from lbgen.progressive import run_analysed_switch, run_steps
        from lbgen.switch import check_sticky, run_switch

        options: dict[str, Any] = dict(timeout=timeout, min_healthy=min_healthy, force=force, dry_run=dry_run,
                                       on_progress=on_progress, lock_wait=lock_wait)
        chosen = [name for name, value in (("--weight", weight), ("--steps", steps), ("--analysis", analysis))
                  if value is not None]
        if len(chosen) > 1:
            raise UsageError(f"{' and '.join(chosen)} do not go together: pick one")
        if chosen and (dry_run or stop_old) and weight is None:
            raise UsageError(f"{chosen[0]} does not go with --dry-run or --stop-old")
        check_sticky(self.config, service, sticky, weight is not None or steps is not None)
        if weight is not None and stop_old:
            raise UsageError("--weight keeps the active env serving: --stop-old does not go with it")
        if steps is not None:
            result = run_steps(self.core, env, service, steps, step_time, thresholds or Thresholds(),
                               on_window=on_window, wall=self.wall, sticky=sticky, **options)
        elif analysis is not None:
            result = run_analysed_switch(self.core, env, service, analysis, thresholds or Thresholds(),
                                         on_window=on_window, wall=self.wall, **options)
        else:
            result = run_switch(self.core, env, service, weight=weight, sticky=sticky, **options)
        if stop_old:
            stopped: list[str] = []
            if result.outcome is Outcome.SWITCHED and result.from_env:
                stopped = self.stop_env(result.service, result.from_env, drain)
            result.stopped = stopped
        return result

    def rollback(self, service: str | None = None, *, timeout: float = 60.0, min_healthy: str | None = None,
                 force: bool = False, dry_run: bool = False, on_progress: ProgressCallback | None = None,
                 lock_wait: float = 30.0, stop_old: bool = False, drain: float = 0.0) -> SwitchResult:
        """Switch `service` back to its previous env, through the same gate. During a canary: all traffic
        back on the active env, the canary ended (the previous env unchanged)."""
        svc = self.config.service(service)
        state = self.core.store.load()
        previous = state.previous.get(svc.name)
        if svc.name in state.canary:  # the canary ends: all traffic on the env that stayed active
            previous = state.recorded_active.get(svc.name) or svc.default_env
        if not previous:
            raise ConfigError(f"no previous env recorded for service {svc.name}; "
                              f"use `lbgen switch --service {svc.name} --env ENV`")
        return self.switch(previous, svc.name, timeout=timeout, min_healthy=min_healthy, force=force,
                           dry_run=dry_run, on_progress=on_progress, lock_wait=lock_wait, stop_old=stop_old,
                           drain=drain)

    def maintenance(self, on: bool, service: str | None = None, *, message: str | None = None,
                    retry_after: float | None = None, lock_wait: float = 30.0) -> MaintenanceResult:
        """Maintenance mode on or off for `service` (None: every service): the proxy answers 503 with
        `message` and Retry-After (`retry_after` seconds), backends untouched, until turned off; it survives
        apply, switch and watch. Returns once the proxy serves the change."""
        from lbgen.maintenance import run_maintenance

        return run_maintenance(self.core, on, service, message=message, retry_after=retry_after, lock_wait=lock_wait)

    def health(self, service: str | None = None, *, apply: bool = False, lock_wait: float = 30.0) -> HealthReport:
        """One pass of active health checks over each service's active env; with `apply`, eject and
        re-admit backends with hysteresis."""
        from lbgen.monitor import run_health

        return run_health(self.core, service, apply=apply, lock_wait=lock_wait)

    def status(self) -> StatusReport:
        """Per service: active/previous env, last switch, each backend's health and routing; and whether
        the live config is what lbgen would render now."""
        from lbgen.status import build_status

        return build_status(self.core)

    def doctor(self) -> DoctorReport:
        """Check every precondition lbgen has on this set-up (Docker, the proxy container, its mounts,
        network, state, status listener, backends); changes nothing."""
        from lbgen.doctor import diagnose

        return diagnose(self.core)

    def history(self, service: str | None = None) -> list[HistoryEntry]:
        """The recorded switch attempts, newest first."""
        if service is not None:
            self.config.service(service)
        return [e for e in self.core.store.load().history if service is None or e.service == service]

    def stop_env(self, service: str, env: str, drain: float = 0.0) -> list[str]:
        """Stop the containers of `env` for `service` after `drain` seconds; never the active env. Swarm
        tasks are not stopped one by one (Swarm would replace them): their services are scaled to 0.
        Returns the names of the stopped containers and scaled services."""
        world = self.core.read_world()
        if world.active.get(service) == env:
            raise UsageError(f"refusing to stop env {env} of service {service}: it is the active env")
        self.core.sleep(drain)
        stopped = []
        for backend in world.inventory.for_service(service):
            if backend.env == env and backend.swarm_service is None:
                self.core.engine.stop_container(backend.id)
                self.core.log(event("stopped", service=service, env=env, container=backend.name))
                stopped.append(backend.name)
        swarm_services = sorted({b.swarm_service for b in world.inventory.for_service(service)
                                 if b.env == env and b.swarm_service is not None})
        for name in swarm_services:
            self.core.engine.scale_service(name, 0)
            self.core.log(event("scaled", service=service, env=env, swarm_service=name, replicas=0))
            stopped.append(name)
        return stopped
