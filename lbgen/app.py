"""The core object a CLI command or a deployment script drives: `Lbgen(config, engine)`.

Each method is one user-level operation (discover, render, apply, switch, rollback, status, history);
the external systems it needs come in through the constructor, so tests inject fakes.
"""
from __future__ import annotations

import difflib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping

from lbgen.config import Config
from lbgen.engine import Engine
from lbgen.errors import ConfigError, UsageError
from lbgen.health import Checker, HttpChecker, HttpGet, check_all, http_get
from lbgen.model import Backend, Inventory
from lbgen.proxy import Proxy
from lbgen.render import Rendered, parse_meta, render
from lbgen.routing import build_pools
from lbgen.state import ProxyLock, State, StateStore, holder_identity


@dataclass
class ApplyResult:
    changed: bool
    generation: str
    diff: str = ""
    dry_run: bool = False
    warnings: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Lbgen:
    def __init__(self, config: Config, engine: Engine | None = None, *, source: Any = None,
                 checker: Checker | None = None, get: HttpGet = http_get,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] = stderr_log) -> None:
        self.config = config
        self._engine = engine
        self._source = source
        self.get = get
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self._checker = checker
        self._proxy: Proxy | None = None

    # --- the parts, built on first use so `render --from-file` never touches Docker -----------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from lbgen.docker_engine import DockerEngine

            self._engine = DockerEngine()
        return self._engine

    @property
    def source(self) -> Any:
        if self._source is None:
            from lbgen.sources.docker import DockerSource

            self._source = DockerSource(self.engine, self.config.network, self.config.label_prefix)
        return self._source

    @property
    def proxy(self) -> Proxy:
        if self._proxy is None:
            self._proxy = Proxy(self.engine, self.config.proxy, self.config.network, self.get,
                                clock=self.clock, sleep=self.sleep)
        return self._proxy

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            self._checker = HttpChecker(self.get, docker_health=self._docker_health)
        return self._checker

    @property
    def store(self) -> StateStore:
        return StateStore(self.engine, self.config.proxy.container, self.config.proxy.state_dir)

    def _docker_health(self, backend: Backend) -> str | None:
        from lbgen.errors import ContainerNotFound

        try:
            return self.engine.get_container(backend.id).health
        except ContainerNotFound:
            return None

    def lock(self, purpose: str, wait: float = 30.0, lease: float = 300.0) -> ProxyLock:
        info = self.proxy.info()
        return ProxyLock(self.engine, info.id, info.image, self.config.proxy.container, purpose,
                         wait=wait, lease=lease, log=self.log)

    # --- operations ---------------------------------------------------------------------------------

    def discover(self) -> Inventory:
        inventory = self.source.discover()
        for skipped in inventory.skipped:
            self.log(f"warning: {skipped}")
        return inventory

    def active_envs(self, live: str | None, state: State | None = None) -> dict[str, str | None]:
        """The active env per service as the live proxy serves it (falling back to state.json)."""
        meta = parse_meta(live or "")
        if meta is not None:
            recorded = meta.active
        else:
            recorded = (state or self.store.load()).recorded_active
        return {k: v for k, v in recorded.items() if k in self.config.services}

    def desired(self, inventory: Inventory, live: str | None, overrides: Mapping[str, str | None] | None = None,
                state: State | None = None) -> Rendered:
        """The config that should be live: the live active envs (then `overrides`), minus ejected backends."""
        state = state if state is not None else self.store.load()
        active = {**self.active_envs(live, state), **(overrides or {})}
        return self.render_for(inventory, active, state.ejected_ids())

    def render_for(self, inventory: Inventory, active: Mapping[str, str | None],
                   ejected: Collection[str] = ()) -> Rendered:
        rendered = render(self.config, build_pools(self.config, inventory, active, ejected))
        for warning in rendered.warnings:
            self.log(f"warning: {warning}")
        return rendered

    def render(self, overrides: Mapping[str, str] | None = None, inventory: Inventory | None = None) -> Rendered:
        """What would go live now. With an `inventory` (render --from-file) Docker is never contacted and
        only `overrides` and the config's defaults decide the active envs."""
        for name in overrides or {}:
            if name not in self.config.services:
                raise UsageError(f"--env {name}=...: no service {name!r} in {self.config.source}")
        if inventory is not None:
            return self.render_for(inventory, dict(overrides or {}))
        return self.desired(self.discover(), self.proxy.read_live(), overrides)

    def apply(self, dry_run: bool = False, lock_wait: float = 30.0) -> ApplyResult:
        """Bring the live proxy to what render() gives; a byte-identical config is left alone."""
        if dry_run:
            live = self.proxy.read_live()
            rendered = self.desired(self.discover(), live)
            return ApplyResult(changed=live != rendered.text, generation=rendered.generation,
                               diff=self.diff(live, rendered.text), dry_run=True, warnings=rendered.warnings)
        with self.lock("apply", wait=lock_wait):
            return self.apply_locked()

    def apply_locked(self, inventory: Inventory | None = None) -> ApplyResult:
        """apply() for a caller that already holds the lock (watch mode)."""
        timings: dict[str, float] = {}
        t = self.clock()
        live, note = self.proxy.reconcile()
        notes = [note] if note else []
        self.proxy.preflight(live)
        inventory = self.discover() if inventory is None else inventory
        rendered = self.desired(inventory, live)
        timings["discover_render"] = self.clock() - t
        if live == rendered.text:
            return ApplyResult(False, rendered.generation, warnings=rendered.warnings, notes=notes, timings=timings)
        t = self.clock()
        self.proxy.install(rendered.text)
        timings["install_validate"] = self.clock() - t
        t = self.clock()
        self.proxy.activate(rendered.generation)
        timings["reload_verify"] = self.clock() - t
        return ApplyResult(True, rendered.generation, warnings=rendered.warnings, notes=notes, timings=timings)

    def switch(self, env: str, service: str | None = None, **options: Any) -> Any:
        """Health-gated switch of `service` to `env`; see lbgen.switch.run_switch for the options."""
        from lbgen.switch import run_switch

        return run_switch(self, env, service, **options)

    def rollback(self, service: str | None = None, **options: Any) -> Any:
        """Switch `service` back to its previous env, through the same gate."""
        svc = self.config.service(service)
        previous = self.store.load().previous.get(svc.name)
        if not previous:
            raise ConfigError(f"no previous env recorded for service {svc.name}; "
                              f"use `lbgen switch --service {svc.name} --env ENV`")
        return self.switch(previous, svc.name, **options)

    def health(self, service: str | None = None, apply: bool = False, lock_wait: float = 30.0) -> Any:
        """One pass of active health checks over each service's active env (a HealthReport); with `apply`,
        eject and re-admit backends with hysteresis. See lbgen.monitor.run_health."""
        from lbgen.monitor import run_health

        return run_health(self, service, apply=apply, lock_wait=lock_wait)

    def stop_env(self, service: str, env: str, drain: float = 0.0) -> list[str]:
        """Stop the containers of `env` for `service` after `drain` seconds; never the active env."""
        live = self.proxy.read_live()
        inventory = self.discover()
        if self.active_envs(live).get(service) == env:
            raise UsageError(f"refusing to stop env {env} of service {service}: it is the active env")
        self.sleep(drain)
        stopped = []
        for backend in inventory.for_service(service):
            if backend.env == env:
                self.engine.stop_container(backend.id)
                self.log(f"event=stopped service={service} env={env} container={backend.name}")
                stopped.append(backend.name)
        return stopped

    def record(self, plan: Any, outcome: str, duration: float, forced: bool, state: State | None = None) -> None:
        """Add a history entry (and, for a switch, the new active/previous env) to the state with the proxy.
        `state` is the one the caller loaded under the same lock, if any."""
        from lbgen.switch import history_entry

        state = state if state is not None else self.store.load()
        entry = history_entry(plan, outcome, duration, forced, holder_identity())
        state.record(entry)
        if outcome == "switched":
            if plan.from_env != plan.to_env:
                state.previous[plan.service] = plan.from_env
            state.recorded_active[plan.service] = plan.to_env
            state.health.pop(plan.service, None)  # the gate just judged the new pool; count afresh
        self.store.save(state)

    def history(self, service: str | None = None) -> list[dict[str, Any]]:
        if service is not None:
            self.config.service(service)
        entries = self.store.load().history
        return [e for e in entries if service is None or e.get("service") == service]

    def status(self) -> dict[str, Any]:
        """Per service: active/previous env, last switch, each backend's health; and whether the live
        config is what lbgen would render now."""
        live = self.proxy.read_live()
        inventory = self.discover()
        state = self.store.load()
        rendered = self.desired(inventory, live, state=state)
        pools = build_pools(self.config, inventory, rendered.active, state.ejected_ids())
        routed = {b.id for pool in pools for b in pool.servers}
        served = self.proxy.served()
        services: dict[str, Any] = {}
        for name, svc in self.config.services.items():
            backends = inventory.for_service(name)
            results = check_all(backends, svc.health, self.checker)
            last = next((e for e in state.history if e.get("service") == name and e.get("outcome") == "switched"), None)
            services[name] = {
                "active_env": rendered.active.get(name),
                "previous_env": state.previous.get(name),
                "last_switch": last,
                "envs": inventory.envs(name),
                "backends": [
                    {**r.backend.to_dict(), "healthy": r.ok, "health_detail": r.detail,
                     "routed": r.backend.id in routed}
                    for r in results
                ],
            }
        live_meta = parse_meta(live or "")
        return {
            "proxy": {"container": self.config.proxy.container, "kind": self.config.proxy.kind,
                      "live_generation": live_meta.generation if live_meta else None,
                      "served_generation": served.generation,
                      "in_sync": live == rendered.text, "rendered_generation": rendered.generation},
            "services": services,
        }

    @staticmethod
    def diff(live: str | None, new: str) -> str:
        return "".join(difflib.unified_diff((live or "").splitlines(True), new.splitlines(True),
                                            "live", "rendered"))

