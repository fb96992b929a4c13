"""The watch loop: a `Watcher` driven by `step()` follows engine events, debounces, applies, runs the health
pass and reconnects (`serve` in serve.py runs it under signal handlers).

Events arrive on a queue from a reader thread and time comes from an injected clock, so tests drive the
loop with a fake engine and no real waiting.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from lbgen import monitor
from lbgen.engine import SWARM_TASK_LABEL, Engine, EngineEvent
from lbgen.errors import LbgenError
from lbgen.health import CheckResult
from lbgen.model import OK, STATUS_NAMES, Backend, Inventory, Pool
from lbgen.report import HealthReport, Transition
from lbgen.routing import build_pools
from lbgen.timings import Timings
from lbgen.watch.actions import START_ACTIONS, STOP_ACTIONS, URGENT_ACTIONS, reason_for, terminating
from lbgen.watch.backoff import Backoff
from lbgen.watch.debounce import Debouncer
from lbgen.watch.decide import Unchanged, read_and_decide
from lbgen.watch.guard import keep_last_known, without_stopping
from lbgen.watch.log import EventLog
from lbgen.watch.metrics import Metrics
from lbgen.watch.schedule import HealthRun, HealthSchedule
from lbgen.watch.swarm_poll import TaskPoll

if TYPE_CHECKING:
    from lbgen.core import ApplyResult, Core, World

RETRY_MAX = 30.0
# Health passes in flight at once: a pass waits for its slowest check (a hung backend: the whole timeout), and
# the next one starts on time beside it, so a backend that hangs fails `fall` checks `interval` apart.
HEALTH_PASSES = 3
# Reasons that are worth a log line even when nothing changed.
NOTEWORTHY = ("startup", "resync", "config-reload", "retry")
# Applies that read the proxy and the record afresh before deciding (never from Core.known): a (re)sync, a
# new lbgen.yaml, a retry after a failure, and a proxy that (re)started with whatever config it has.
COLD_REASONS = (*NOTEWORTHY, "proxy-start")


def _secs(seconds: float) -> str:
    return f"{seconds:.2f}s"


def start_thread(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


class Watcher:
    """Follows the engine's events and keeps the proxy's config in line with what is running.

    `app_factory()` builds the core object (again on SIGHUP, re-reading lbgen.yaml). `clock` drives every
    decision; `spawn(target, name)` runs the event reader and the health checks (a thread by default).
    Each service is checked every `health.interval` of its own, or every `interval` when one is given.
    """

    def __init__(self, app_factory: Callable[[], Core], engine: Engine, *, interval: float | None = None,
                 min_quiet: float = 0.1, max_delay: float = 1.0, lock_wait: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 log: Callable[..., None] | None = None, metrics: Metrics | None = None,
                 spawn: Callable[[Callable[[], None], str], None] = start_thread, health: bool = True,
                 backoff: tuple[float, float] = (0.5, 10.0), stopping_ttl: float = 60.0) -> None:
        self.app_factory = app_factory
        self.app = app_factory()
        self.engine = engine
        self.interval = interval
        self.lock_wait = lock_wait
        self.clock = clock
        self.wall = wall
        self.log = log or EventLog()
        self.metrics = metrics or Metrics()
        self.spawn = spawn
        self.health_enabled = health
        self.reconnect_backoff = Backoff(*backoff)
        self.retry_backoff = Backoff(1.0, RETRY_MAX)
        self.stopping_ttl = stopping_ttl

        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.debouncer = Debouncer(min_quiet, max_delay)
        self.reasons: list[str] = []  # why the pending apply, in arrival order
        self.urgent = False  # a stop event waits: apply without debouncing
        self.stopping: dict[str, float] = {}  # container id -> when its kill/stop/die arrived
        self.last_pools: dict[str, tuple[Backend, ...]] = {}  # what the last good apply routed
        self.guarded: set[str] = set()  # services whose pool the guard is keeping
        self.service_status: dict[str, int] = {}
        self.task_poll = TaskPoll()  # Swarm tasks' states while a service converges

        self.connected = False
        self.reader = 0  # generation of the current event reader; older readers' messages are ignored
        self.connected_at = 0.0
        self.reconnect_at: float | None = None
        self.synced_once = False
        self.synced_wall = 0.0  # wall time of the last (re)connection's sync: earlier proxy starts are in it
        self.retry_at: float | None = None
        self.next_health: float | None = None  # when the next service is due a check
        self.schedule = HealthSchedule(interval)
        self.health_running = 0  # passes whose checks are still out
        self.metrics.set("lbgen_watch_connected", 0)

    # --- driving -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (and sync) at the next step."""
        self.reconnect_at = self.clock()

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set: follow events, apply, check health, reconnect."""
        self.start()
        self.log("started", proxy=self.app.config.proxy.container, services=",".join(self.app.config.services),
                 interval=_secs(self.interval) if self.interval is not None else "per-service",
                 debounce=f"{self.debouncer.min_quiet:g}s:{self.debouncer.max_delay:g}s")
        while not stop.is_set():
            self.step(self.wait_time())
        self.log("stopped")

    def wake(self) -> None:
        """Make a blocked step() return (safe from a signal handler: SimpleQueue.put is reentrant)."""
        self.queue.put(("wake",))

    def request_reload(self) -> None:
        """Re-read lbgen.yaml at the next step (SIGHUP)."""
        self.queue.put(("reload",))

    def wait_time(self, cap: float = 1.0) -> float:
        """How long step() may block before a timer is due."""
        now = self.clock()
        if self.urgent and self.connected:
            return 0.0
        health_due = self.next_health if self.health_enabled and self.health_running < HEALTH_PASSES else None
        times = [self.debouncer.deadline(), self.retry_at, health_due, self.task_poll.deadline()]
        if not self.connected:
            times = [self.reconnect_at]
        pending = [t - now for t in times if t is not None]
        return max(0.0, min([cap, *pending]))

    def step(self, timeout: float = 0.0) -> None:
        """Wait up to `timeout` for a message; handle it and every other queued one; then whatever is due."""
        messages = []
        try:
            messages.append(self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait())
            while True:
                messages.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        for message in messages:
            self._handle(message)
        self._run_due()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            self._on_event(message[1], message[2])
        elif kind == "closed":
            self._on_closed(message[1], message[2])
        elif kind == "health":
            self._on_health(message[1], message[2])
        elif kind == "reload":
            self._reload()

    def _run_due(self) -> None:
        now = self.clock()
        if not self.connected:
            if self.reconnect_at is not None and now >= self.reconnect_at:
                self._connect()
            return
        if self.task_poll.due(now):
            self._poll_tasks()
        if self.urgent or self.debouncer.due(now):
            self.apply(",".join(self.reasons) or "event", burst=True)
        elif self.retry_at is not None and now >= self.retry_at:
            self.apply("retry")
        now = self.clock()
        if (self.health_enabled and self.connected and self.health_running < HEALTH_PASSES
                and self.next_health is not None
                and now >= self.next_health):
            self._start_health(now)

    # --- events ------------------------------------------------------------------------------------

    def _connect(self) -> None:
        now = self.clock()
        try:
            self.engine.ping()
        except LbgenError as e:
            delay = self.reconnect_backoff.next()
            self.reconnect_at = now + delay
            self.log("connect-failed", error=str(e), retry_in=_secs(delay))
            return
        self.reader += 1
        generation = self.reader
        label = f"{self.app.config.label_prefix}.service"
        since = self.wall() - 1.0  # replay the last second: nothing falls between the stream and the sync
        self.spawn(lambda: self._read(generation, label, since), "lbgen-events")
        self.connected = True
        self.connected_at = now
        self.reconnect_at = None
        self.metrics.set("lbgen_watch_connected", 1)
        reason = "resync" if self.synced_once else "startup"
        if self.synced_once:
            self.log("reconnected")
        self.synced_once = True
        self.synced_wall = self.wall()
        self.apply(reason)
        self.schedule.reset()  # every service is checked right after a (re)sync
        self.next_health = self.clock()

    def _read(self, generation: int, label: str, since: float) -> None:
        """The reader thread: the engine's events onto the queue, then a `closed` message."""
        reason = "the event stream failed"
        try:
            # The proxy's own events too, by its configured name: a recreated proxy is configured at once.
            for event in self.engine.events(label, since=since, names=(self.app.config.proxy.container,)):
                if generation != self.reader:
                    return  # superseded (lbgen.yaml changed the label prefix)
                self.queue.put(("event", generation, event))
            reason = "the Docker event stream ended"
        except LbgenError as e:
            reason = str(e)
        finally:
            self.queue.put(("closed", generation, reason))

    def _on_closed(self, generation: int, reason: str) -> None:
        if generation != self.reader or not self.connected:
            return
        self.connected = False
        self.metrics.set("lbgen_watch_connected", 0)
        self.metrics.inc("lbgen_watch_reconnects_total")
        if self.clock() - self.connected_at >= self.reconnect_backoff.cap:
            self.reconnect_backoff.reset()  # it had been up a while: this is a new outage
        delay = self.reconnect_backoff.next()
        self.reconnect_at = self.clock() + delay
        self.log("disconnected", error=reason, retry_in=_secs(delay))

    def _on_event(self, generation: int, event: EngineEvent) -> None:
        if generation != self.reader:
            return
        action = event.action
        self.metrics.inc("lbgen_watch_events_total", action=action)
        now = self.clock()
        if (event.container_name == self.app.config.proxy.container
                and f"{self.app.config.label_prefix}.service" not in event.labels):
            if action not in START_ACTIONS or event.time < self.synced_wall:
                return  # a proxy going away has nothing to route; a start the sync already saw is done
            self.urgent = True  # a recreated, restarted or replaced proxy: configure it from the record now
            if "proxy-start" not in self.reasons:
                self.reasons.append("proxy-start")
            return
        if action in STOP_ACTIONS:
            if not terminating(event):
                return
            self.stopping[event.container_id] = now
            self.urgent = True
        elif action in URGENT_ACTIONS:
            self.urgent = True
        else:
            if action in START_ACTIONS or action == "destroy":
                self.stopping.pop(event.container_id, None)
            # Docker connects a container's networks just before it starts it: the start is the event to act on.
            self.debouncer.add(now, hold=action == "connect")
        if action.startswith("service-") or SWARM_TASK_LABEL in event.labels:
            self.task_poll.arm(now)  # the manager learns of the tasks' states after this event
        reason = reason_for(action)
        if reason not in self.reasons:
            self.reasons.append(reason)

    def _poll_tasks(self) -> None:
        """A poll of the Swarm tasks: a task that left (desired shutdown, failed) applies at once, one that
        came (or changed state) through the debouncer."""
        now = self.clock()
        try:
            result = self.task_poll.poll(self.engine, f"{self.app.config.label_prefix}.service", now)
        except LbgenError as e:
            self.task_poll.next_at = None  # a broken engine ends the event stream too: the resync rediscovers
            self.log("task-poll-failed", error=str(e))
            return
        if result.changed:
            self.urgent = self.urgent or result.left
            self.debouncer.add(now)
            if "swarm-tasks" not in self.reasons:
                self.reasons.append("swarm-tasks")

    def feed(self, event: EngineEvent) -> None:
        """Queue an event as the current reader would (tests, and callers with their own event source)."""
        self.queue.put(("event", self.reader, event))

    # --- applying ----------------------------------------------------------------------------------

    def apply(self, reason: str, health: HealthRun | None = None,
              results: Mapping[str, Sequence[CheckResult]] | None = None, burst: bool = False) -> bool:
        """Discover, guard, render; when the config (or the health counts) changed, take the lock and apply.

        Never empties a pool the last good apply filled (discovery answering nothing for it keeps its
        last known backends), and an apply that fails leaves the last good config live and is retried.
        `burst`: this apply answers events, and counts for the debouncer's one-reload-per-max-delay.
        """
        started = self.clock()
        self.urgent = False
        self.debouncer.clear()
        self.reasons = []
        self.retry_at = None
        app = self.app
        transitions: list[Transition] = []
        timings = Timings(self.clock)
        try:
            warm = not set(reason.split(",")) & set(COLD_REASONS)
            world, decision = read_and_decide(app, warm, lambda w: self._pools_of(w, started), results, timings)
            inventory, state, rendered = decision.inventory, world.state, decision.rendered
            active = world.active
            if decision.nothing_to_do:
                result: ApplyResult | Unchanged = Unchanged(rendered.generation)
            else:
                with app.locked(f"watch ({reason})", timings, wait=self.lock_wait):
                    if results is not None:  # the same step as `lbgen health --apply`
                        transitions, result, settled = monitor.settle(app, app.config, results, inventory,
                                                                      timings)
                        state = settled.state
                    else:
                        result = app.converge(inventory, timings)
        except LbgenError as e:
            delay = self.retry_backoff.next()
            self.retry_at = self.clock() + delay
            self.metrics.inc("lbgen_watch_applies_total", result="failed")
            self.metrics.inc("lbgen_watch_apply_failures_total")
            self.log("apply-failed", reason=reason, error=str(e), retry_in=_secs(delay),
                     took=_secs(self.clock() - started))
            return False
        took = self.clock() - started
        self.retry_backoff.reset()
        pools = build_pools(app.config, inventory, active, state.ejected_ids(), state.canary)
        if burst and result.changed:
            self.debouncer.fired(started)
        self._record(reason, result, pools, took, timings)
        if health is not None and results is not None:
            report = monitor.build_report(app.config, inventory, active, health.services, results, state,
                                          health.checked_at, self.clock() - health.started, transitions)
            self._record_health(report)
        return True

    def _record(self, reason: str, result: Any, pools: Sequence[Pool], took: float,
                timings: Timings | None = None) -> None:
        changed = [p for p in pools if {b.id for b in p.servers} != {b.id for b in self.last_pools.get(p.service, ())}]
        if result.changed:
            for p in changed or pools:
                self.log("apply", service=p.service, reason=reason, backends=len(p.servers),
                         generation=result.generation, via=result.via or "reload",
                         **(timings.fields() if timings else {}), took=_secs(took))
        elif reason.split(",")[0] in NOTEWORTHY:
            self.log("unchanged", reason=reason, generation=result.generation, took=_secs(took))
        self.metrics.applied(result.changed, {p.service: len(p.servers) for p in pools}, took, self.wall())
        self.last_pools = {p.service: p.servers for p in pools}

    def _pools_of(self, world: World, now: float) -> Inventory:
        """What the pools get of `world`'s inventory: no stopping backend, no pool emptied by discovery."""
        return self._guard(self._exclude(world.inventory, now), world.active)

    def _exclude(self, inventory: Inventory, now: float) -> Inventory:
        """Leave out backends that are stopping (a kill/stop/die arrived and no start since)."""
        return without_stopping(inventory, self.stopping, now, self.stopping_ttl)

    def _guard(self, inventory: Inventory, active: Mapping[str, str | None]) -> Inventory:
        """A pool that had servers never becomes empty because discovery answered nothing for it."""
        guarded, kept = keep_last_known(self.app.config, inventory, active, self.last_pools)
        for service in guarded:
            if service not in self.guarded:
                self.log("guard", service=service, kept=len(self.last_pools[service]),
                         detail="discovery found no backend for the pool; keeping the last known ones")
        self.guarded = set(guarded)
        return kept

    # --- health ------------------------------------------------------------------------------------

    def _start_health(self, now: float) -> None:
        """Survey in the loop (fast), check the services that are due in the background (up to a
        timeout), apply back in the loop."""
        app = self.app
        due = self.schedule.due_now(app.config.services, now)
        self.next_health = self.schedule.checked(app.config.services, due, now)
        if not due:
            return
        try:
            world = app.read_world()
            services = monitor.targets_for(monitor.only(app.config, due), world.inventory, world.active,
                                           exclude=set(self.stopping))
        except LbgenError as e:
            self.log("health-failed", error=str(e))
            return
        run = HealthRun(services, self.wall(), self.clock())
        checker = app.checker
        self.health_running += 1

        def work() -> None:
            outcome: Any = "the health checks failed"
            try:
                outcome = monitor.run_checks(services, checker)
            except LbgenError as e:
                outcome = str(e)
            finally:
                self.queue.put(("health", run, outcome))

        self.spawn(work, "lbgen-health")

    def _on_health(self, run: HealthRun, outcome: Any) -> None:
        self.health_running -= 1
        if isinstance(outcome, str):
            self.log("health-failed", error=outcome)
            return
        if self.connected:
            self.apply("health", health=run, results=outcome)

    def _record_health(self, report: HealthReport) -> None:
        # A pass checks only the services that were due: the metrics keep every service's latest.
        self.metrics.set_health(self.schedule.merged(report, list(self.app.config.services)))
        for s in report.services:
            if self.service_status.get(s.name, OK) != s.status:
                self.log("health", service=s.name, status=STATUS_NAMES[s.status],
                         healthy=f"{s.healthy}/{len(s.backends)}", ejected=s.ejected)
            self.service_status[s.name] = s.status

    # --- SIGHUP ------------------------------------------------------------------------------------

    def _reload(self) -> None:
        try:
            app = self.app_factory()
        except LbgenError as e:
            self.log("config-reload-failed", error=str(e), detail="still running with the previous lbgen.yaml")
            return
        old_label = self.app.config.label_prefix
        old_services = self.app.config.services
        self.app = app
        self.last_pools = {k: v for k, v in self.last_pools.items() if k in app.config.services}
        self.schedule.reconfigured(old_services, app.config.services)
        if self.next_health is not None:
            self.next_health = self.clock()
        if isinstance(self.log, EventLog):
            self.log.forget_warnings()
        self.log("config-reloaded", source=app.config.source)
        if app.config.label_prefix != old_label and self.connected:
            self.reader += 1  # the old reader's events are for the old label
            self.connected = False
            self.reconnect_at = self.clock()
            self._connect()
        elif self.connected:
            self.apply("config-reload")
