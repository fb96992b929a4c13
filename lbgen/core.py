"""The core every operation stands on: `Core` holds the parts lbgen drives (engine, discovery, proxy,
state store, checker, clock, event sink), `read_world()` reads what is live, recorded and running once,
in one order, and `converge()` is the one step that brings the proxy in line with it (apply,
`health --apply` and watch all end in it)."""
from __future__ import annotations

import difflib
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Iterator, Mapping

from lbgen.config import Config
from lbgen.engine import ContainerInfo, Engine
from lbgen.errors import ContainerNotFound, LockHeld
from lbgen.events import EventSink, discard, event, warning
from lbgen.main_context import MainContext
from lbgen.health import Checker, HttpChecker, HttpGet, http_get
from lbgen.probe import AUTO, DIRECT, ENGINE, EngineChecker, Probe, can_reach, resolve_mode
from lbgen.model import Backend, Canary, Inventory, Maintenance
from lbgen.proxies.base import PreviousSlot
from lbgen.proxies.driver import Proxy
from lbgen.render import LiveMeta, Rendered, parse_meta, render, with_base
from lbgen.routing import build_pools
from lbgen.sources import Source
from lbgen.state import Origin, ProxyLock, State, StateStore
from lbgen.timings import Timings, bulk, phase


@dataclass(frozen=True)
class World:
    """What is live, recorded and running, read once: the config on the proxy's disk, the record, what
    discovery found, and the active env per service as recorded. `assumed` holds the services that have
    no recorded switch although several envs are present: routing falls back to their default_env."""

    live: str | None
    state: State
    inventory: Inventory
    active: Mapping[str, str | None]
    notes: tuple[str, ...] = ()
    assumed: Mapping[str, str] = field(default_factory=dict)

    def active_recorded(self, service: str) -> bool:
        """True when the service's active env is on record; False when it is assumed (no switch recorded,
        or the state holder was deleted) and several envs are present. For `status`, `health`, `doctor`."""
        return service not in self.assumed

    def with_inventory(self, inventory: Inventory) -> World:
        return replace(self, inventory=inventory)


@dataclass(frozen=True)
class ApplyResult:
    """What one converge did: `changed` (the proxy serves `generation`, made live `via` a reload or HAProxy's
    runtime API), or not. `timings`: seconds per phase (lbgen.timings.PHASES) and `total`."""

    changed: bool
    generation: str
    via: str = ""  # how a change went live: "reload", or "runtime" (HAProxy's runtime API, no reload)
    diff: str = ""
    dry_run: bool = False
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The `lbgen apply --json` object."""
        data: dict[str, Any] = {
            "changed": self.changed, "generation": self.generation, "via": self.via or None,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes), "warnings": list(self.warnings),
        }
        if self.dry_run:
            data["dry_run"] = True
            data["diff"] = self.diff
        return data


class Core:
    """The parts one lbgen run drives, each built on first use (so `render --from-file` never touches
    Docker) and each replaceable through the constructor (tests pass fakes)."""

    def __init__(self, config: Config, engine: Engine | None = None, *, source: Source | None = None,
                 checker: Checker | None = None, get: HttpGet = http_get,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 log: EventSink = discard, reach: Callable[[str, int], bool] = can_reach) -> None:
        self.config = config
        self._engine = engine
        self._proxy_engine: Engine | None = None
        self._swarm: bool | None = None
        self._source = source
        self._checker = checker
        self._proxy: Proxy | None = None
        self._mode: str | None = None
        self.reach = reach
        self.get = get
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self._warned: set[tuple[str, str | None]] = set()
        self._main_context: MainContext | None = None
        # The world as the last converge left it (the config it found or made live, the record it read
        # under the lock): a long-running caller (watch) decides from it whether an event needs the lock
        # at all. Only a hint: converge reads everything again under the lock.
        self.known: World | None = None
        self.check_mode_reason = ""  # why check_mode is what it is (doctor says it)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from lbgen.docker_engine import DockerEngine

            self._engine = DockerEngine()
        return self._engine

    @property
    def proxy_engine(self) -> Engine:
        """The engine that runs the proxy container (`proxy.docker_host`; default: `engine`)."""
        if self._proxy_engine is None:
            if self.config.proxy.docker_host is None:
                self._proxy_engine = self.engine
            else:
                from lbgen.docker_engine import DockerEngine

                self._proxy_engine = DockerEngine(base_url=self.config.proxy.docker_host)
        return self._proxy_engine

    @property
    def swarm(self) -> bool:
        """Whether `engine` is a Swarm manager (then services' tasks are discovered too)."""
        if self._swarm is None:
            self._swarm = self.engine.swarm_manager()
        return self._swarm

    @property
    def source(self) -> Source:
        if self._source is None:
            from lbgen.sources import MultiSource, Networks
            from lbgen.sources.docker import DockerSource
            from lbgen.sources.swarm import SwarmSource

            networks = Networks(self.config.networks, self._proxy_info)
            docker = DockerSource(self.engine, networks, self.config.label_prefix, skip_swarm_tasks=self.swarm)
            self._source = docker
            if self.swarm:
                self._source = MultiSource([docker, SwarmSource(self.engine, networks, self.config.label_prefix)])
        return self._source

    def _proxy_info(self) -> ContainerInfo | None:
        try:
            return self.proxy.info()
        except ContainerNotFound:
            return None

    @property
    def proxy(self) -> Proxy:
        if self._proxy is None:
            self._proxy = Proxy(self.proxy_engine, self.config.proxy, self.config.networks, self._served_get,
                                clock=self.clock, sleep=self.sleep, manager=self.engine)
        return self._proxy

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            if self.check_mode == ENGINE:
                self._checker = EngineChecker(self.probe, docker_health=self._docker_health)
            else:
                self._checker = HttpChecker(self.get, docker_health=self._docker_health)
        return self._checker

    @property
    def probe(self) -> Probe:
        return Probe(self.proxy_engine, self.proxy.ref())

    @property
    def check_mode(self) -> str:
        """direct or engine: where backends and the proxy's status listener are reached from, decided once
        per run (docs/remote.md). `auto` with an injected `get` (tests, library callers) stays direct."""
        if self._mode is None:
            setting = self.config.checks
            if setting == AUTO and self.get is not http_get:
                setting = DIRECT
            self._mode, why = resolve_mode(setting, os.environ.get("DOCKER_HOST"), self._proxy_reachable)
            self.check_mode_reason = why if setting == self.config.checks else "an HTTP client was passed in"
            if self.config.checks == AUTO and self._mode == ENGINE:
                self.log(event("checks", via="engine", container=self.config.proxy.container, reason=why))
        return self._mode

    def _proxy_reachable(self) -> bool:
        try:
            address = self.proxy.address().strip("[]")
        except ContainerNotFound:
            return True  # the driver's preflight names the real problem (missing, not on the network)
        return self.reach(address, self.config.proxy.status_port)

    def _served_get(self, url: str, timeout: float, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """The proxy's status listener, asked directly or, in engine mode, from inside the proxy itself."""
        if self.check_mode == ENGINE:
            return self.probe.get(url, timeout, headers)
        if headers:
            return self.get(url, timeout, headers)
        return self.get(url, timeout)

    @property
    def store(self) -> StateStore:
        return StateStore(self.proxy_engine, self.config.proxy.container, self.config.proxy.state_dir,
                          legacy_container=self.proxy.ref)

    def _docker_health(self, backend: Backend) -> str | None:
        from lbgen.errors import ContainerNotFound

        try:
            return self.engine.get_container(backend.id).health
        except ContainerNotFound:
            return None

    def lock(self, purpose: str, wait: float = 30.0, lease: float = 300.0) -> ProxyLock:
        # Keyed by the proxy's configured name, like the record: a recreated proxy keeps its lock.
        return ProxyLock(self.proxy_engine, self.config.proxy.container, purpose, wait=wait, lease=lease,
                         log=self.log)

    @contextmanager
    def locked(self, purpose: str, timings: Timings, wait: float = 30.0, lease: float = 300.0) -> Iterator[None]:
        """Hold the proxy's lock for the block, its acquisition timed as the phase `lock` (and the first
        use of the engine as `connect`: a one-shot command pays the Docker SDK's import there)."""
        with ExitStack() as stack:
            if self._proxy_engine is None:
                with timings.phase("connect"):
                    self.proxy_engine
            with timings.phase("lock"):
                stack.enter_context(self.lock(purpose, wait=wait, lease=lease))
            yield

    # --- reading -------------------------------------------------------------------------------------

    def discover(self) -> Inventory:
        inventory = self.source.discover()
        for skipped in inventory.skipped:
            self.log(warning(str(skipped)))
        return inventory

    def active_envs(self, live: str | None, state: State) -> dict[str, str | None]:
        """The active env per service as recorded: the record on the engine is the truth (the served
        config's header is what verification compares against). What a service without a record routes
        to is routing's rule (resolve_active_env)."""
        return {k: v for k, v in state.recorded_active.items() if k in self.config.services and v is not None}

    def read_world(self, *, reconcile: bool = False, inventory: Inventory | None = None,
                   timings: Timings | None = None) -> World:
        """Live config, record, inventory, active envs: in this order, once. With `reconcile` (the caller
        holds the lock), first settle what a killed lbgen left half-done, and write a carried-over record.
        `timings` gets reconcile (the live config and the record read) and discover."""
        notes: list[str] = []
        with phase(timings, "reconcile"):
            if reconcile:
                live, note = self.proxy.reconcile()
                notes += [note] if note else []
            else:
                live = self.proxy.read_live()
            state = self.store.load()
        meta = parse_meta(live or "")
        if state.origin is Origin.CARRIED_OVER:
            notes.append(self._carry_over(state, meta.active if meta else {}, reconcile))
        if inventory is None:
            with phase(timings, "discover"):
                inventory = self.discover()
        active = self.active_envs(live, state)
        if state.origin is Origin.RECORD:
            notes += self._disagreements(active, meta.active if meta else None)
        # Without a default_env there is nothing to assume: rendering refuses, naming what to run.
        assumed = {name: svc.default_env for name, svc in self.config.services.items()
                   if name not in active and svc.default_env is not None and len(inventory.envs(name)) > 1}
        for name, env in assumed.items():
            self._warn_assumed(name, env, inventory.envs(name))
        return World(live, state, inventory, active, tuple(notes), assumed)

    def _carry_over(self, state: State, served: Mapping[str, str | None], write: bool) -> str:
        # An older lbgen let the served header win over its state.json: carry over what it served.
        for name, env in served.items():
            if env is not None and name in state.recorded_active:
                state.recorded_active[name] = env
        where = f"container {self.store.holder.name}"
        if not write:
            return (f"the record is still in proxy container {self.config.proxy.container} "
                    f"({self.store.legacy_path}); the next apply, switch or health --apply carries it over to {where}")
        self.store.save(state)
        note = (f"carried over the active envs and history from {self.store.legacy_path} in proxy container "
                f"{self.config.proxy.container} to {where}, where they outlive the proxy")
        self.log(event("state-carried-over", proxy=self.config.proxy.container, holder=self.store.holder.name))
        return note

    def _disagreements(self, active: Mapping[str, str | None], served: Mapping[str, str | None] | None) -> list[str]:
        """Notes where the proxy's config does not route what the record says (a recreated, restarted
        or replaced proxy); converge brings it in line."""
        if not active:
            return []
        if served is None:
            wanted = " ".join(f"{k}={v}" for k, v in sorted(active.items()))
            return [f"proxy {self.config.proxy.container} has no config from lbgen (recreated?); configuring it "
                    f"with the recorded active envs ({wanted})"]
        return [f"proxy {self.config.proxy.container} routes {name} to {served.get(name) or 'nothing'}, the "
                f"record (newest switch) says {env}: the record wins, the proxy is brought in line"
                for name, env in sorted(active.items()) if served.get(name) != env]

    def _warn_assumed(self, service: str, env: str, envs: list[str]) -> None:
        if (service, env) in self._warned:
            return
        self._warned.add((service, env))
        self.log(warning(
            f"no record of which env is active for service {service} (envs {', '.join(envs)} present); "
            f"assuming default_env {env}. The record lives in container {self.store.holder.name} on the "
            f"Docker engine; `lbgen switch --service {service} --env ENV` records one"))

    def repair(self, world: World, lock_wait: float = 30.0) -> World:
        """What read-only commands (status, health) do first: a proxy that lbgen configured before (there
        is a record) but that now routes otherwise or carries no lbgen config (recreated, restarted from
        another image) is brought in line, under the lock. Anything else is left alone."""
        if world.state.origin is not Origin.RECORD or not self._disagreements(world.active, _served(world.live)):
            return world
        try:
            with self.lock("bring the proxy in line with the record", wait=lock_wait):
                result = self.converge(world.inventory)
        except LockHeld as e:  # whoever holds it converges too; report what is there now
            self.log(warning(f"the proxy does not route what is recorded, and it could not be fixed now: {e}"))
            return world
        for note in result.notes:
            self.log(event("note", message=note))
        self.log(event("repaired", proxy=self.config.proxy.container, generation=result.generation,
                       changed=result.changed))
        return self.read_world(inventory=world.inventory)

    # --- deciding ------------------------------------------------------------------------------------

    def desired(self, world: World, overrides: Mapping[str, str | None] | None = None,
                state: State | None = None) -> Rendered:
        """The config that should be live: the recorded active envs (then `overrides`), minus the backends
        the health counts in `state` (default: the world's) have ejected."""
        active = {**world.active, **(overrides or {})}
        state = state or world.state
        args = (world.inventory, active, state.ejected_ids())
        options: dict[str, Any] = {"proxy_version": self.proxy_version(), "maintenance": state.maintenance,
                                   "canary": state.canary, "logged": state.logged()}
        kind = self.proxy.kind
        layout = kind.layout(world.live)
        if layout is not None:
            # Keep the live server slots where a change fits in them (HAProxy's runtime API makes it live
            # without a reload); anything else renders a fresh layout, which a reload makes live.
            kept = self.render_for(*args, **options, layout=layout, log=False)
            live = parse_meta(world.live or "")
            if live is not None and kind.runtime_plan(world.live, kept.text) is not None:
                self.render_warnings(kept)
                return with_base(kept, live.base if kept.generation == live.generation else self._base(live))
        return self.render_for(*args, **options)

    def _base(self, live: LiveMeta) -> str:
        """The generation a runtime change on top of `live` is made on: the one the proxy loaded, as its
        status listener says: `live`'s base while no reload happened since, else `live` itself (a reload
        or a restart loaded it)."""
        served = self.proxy.served().generation
        return live.base if live.base is not None and served == live.base else live.generation

    def proxy_version(self) -> tuple[int, ...] | None:
        """The running proxy's version when the template needs it (TLS syntax), else None unasked."""
        if not any(svc.tls for svc in self.config.services.values()):
            return None
        return self.proxy.version()

    def render_for(self, inventory: Inventory, active: Mapping[str, str | None],
                   ejected: Collection[str] = (), proxy_version: tuple[int, ...] | None = None,
                   maintenance: Mapping[str, Maintenance] | None = None,
                   canary: Mapping[str, Canary] | None = None, logged: Collection[str] = (),
                   layout: Mapping[str, tuple[PreviousSlot, ...]] | None = None, log: bool = True) -> Rendered:
        """Render (reading and checking the TLS certificates lbgen.yaml names) and log its warnings. A
        service with a `canary` routes to both envs, weighted, and logs each request for the analysis;
        `layout` keeps HAProxy's live server slots (runtime API)."""
        with bulk():
            rendered = render(self.config, build_pools(self.config, inventory, active, ejected, canary),
                              proxy_version=proxy_version, maintenance=maintenance, logged=logged, layout=layout,
                              canary=canary)
        if log:
            self.render_warnings(rendered)
        return rendered

    def render_warnings(self, rendered: Rendered) -> None:
        for message in rendered.warnings:
            self.log(warning(message))

    # --- changing ------------------------------------------------------------------------------------

    def converge(self, inventory: Inventory | None = None, timings: Timings | None = None,
                 world: World | None = None) -> ApplyResult:
        """Bring the live proxy to what the world asks for (the caller holds the lock): reconcile, read,
        render, and when the text differs install (validated), reload and verify. A byte-identical config
        is left alone. `timings` (the caller's, when it timed the lock too) gets every phase. `world`: one
        the caller read with `reconcile=True` under the same lock (not read again)."""
        timings = timings if timings is not None else Timings(self.clock)
        self.known = None  # until this converge ends well
        if world is None:
            world = self.read_world(reconcile=True, inventory=inventory, timings=timings)
        with timings.phase("reconcile"):
            self.proxy.preflight(world.live)
        with timings.phase("render"):
            rendered = self.desired(world)
            main = self.proxy.main_to_write(rendered.main)
        if world.live == rendered.text and (main is None or self.proxy.read_main() == main):
            self.check_main_context(main is not None)
            self.known = world
            return ApplyResult(False, rendered.generation, warnings=rendered.warnings, notes=world.notes,
                               timings=timings.finish().as_dict())
        self.require_main_context(main)
        # Only server slots differ (HAProxy): the runtime API makes it live, no reload; else a reload.
        plan = self.proxy.kind.runtime_plan(world.live, rendered.text) if main is None else None
        self.proxy.install(rendered.text, rendered.files, world.live, main=main, timings=timings)
        via, note = self.proxy.go_live(rendered.text, rendered.generation, plan, timings=timings)
        self.known = replace(world, live=rendered.text)
        self.check_main_context(main is not None)
        return ApplyResult(True, rendered.generation, via=via, warnings=rendered.warnings,
                           notes=world.notes + ((note,) if note else ()), timings=timings.finish().as_dict())

    @property
    def main_context(self) -> MainContext:
        """What lbgen.yaml asks of nginx's main-context file, and the checks that nginx reads it."""
        if self._main_context is None:
            self._main_context = MainContext(self.config, lambda: self.proxy, lambda e: self.log(e))
        return self._main_context

    def main_context_needed(self) -> tuple[str, ...]:
        return self.main_context.needed()

    def tcp_services(self) -> tuple[str, ...]:
        return self.main_context.tcp_services()

    def require_main_context(self, main: str | None) -> None:
        self.main_context.require(main)

    def check_main_context(self, writable: bool) -> None:
        self.main_context.check(writable)

    def diff(self, live: str | None, rendered: Rendered) -> str:
        """A dry run's diff: the config file, and nginx's main-context file when TCP services live there."""
        text = diff(live, rendered.text)
        if rendered.main is not None and self.tcp_services() and self.proxy.read_main() != rendered.main:
            text += diff(self.proxy.read_main(), rendered.main, "live main-context file")
        return text


def _served(live: str | None) -> Mapping[str, str | None] | None:
    meta = parse_meta(live or "")
    return meta.active if meta else None


def diff(live: str | None, new: str, what: str = "live") -> str:
    """A unified diff of the live config against a rendered one."""
    return "".join(difflib.unified_diff((live or "").splitlines(True), new.splitlines(True), what,
                                        what.replace("live", "rendered")))
