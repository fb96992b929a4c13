"""The blue-green switch: a pure plan, then one short orchestration — gate, swap, verify, record.

`run_switch` is what `Lbgen.switch()` / `rollback()` (and so `lbgen switch` / `rollback`) run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from lbgen.config import Config
from lbgen.core import Core
from lbgen.errors import ConfigError, HealthGateFailed, LbgenError, NoBackends, ReloadFailed, UsageError
from lbgen.events import event
from lbgen.health import GateProgress, GateResult, check_all, check_confirmed, gate, required_count
from lbgen.model import STICKY_KINDS, Backend, Canary, HistoryEntry, Inventory, Outcome
from lbgen.routing import recorded_or_default, resolve_active_env
from lbgen.state import State, holder_identity
from lbgen.sticky import new_epoch, next_epoch
from lbgen.timings import Timings


@dataclass(frozen=True)
class SwitchPlan:
    service: str
    from_env: str | None
    to_env: str
    targets: tuple[Backend, ...]
    required: int


@dataclass
class SwitchResult:
    service: str
    from_env: str | None
    to_env: str
    outcome: Outcome  # switched, canary, canary-ended, unchanged or dry-run when returned
    forced: bool = False
    generation: str | None = None
    diff: str = ""
    gate: GateResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped: list[str] | None = None  # the old env's containers stopped after the switch (stop_old)
    weight: int | None = None  # a canary step: the to-env's share in percent (the from-env stays active)
    analysis: list[dict[str, Any]] = field(default_factory=list)  # each analysed window (lbgen.analysis)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "service": self.service, "from_env": self.from_env, "to_env": self.to_env,
            "outcome": self.outcome.value, "forced": self.forced, "generation": self.generation,
            "timings": {k: round(v, 4) for k, v in self.timings.items()}, "notes": self.notes,
        }
        if self.gate is not None:
            data["gate"] = {"passed": self.gate.passed, "required": self.gate.required,
                            "healthy": [b.name for b in self.gate.healthy],
                            "failing": [{"name": r.backend.name, "detail": r.detail} for r in self.gate.failing]}
        if self.outcome is Outcome.DRY_RUN:
            data["diff"] = self.diff
        if self.stopped is not None:
            data["stopped"] = self.stopped
        if self.weight is not None:
            data["weight"] = self.weight
        if self.analysis:
            data["analysis"] = self.analysis
        return data


def plan_switch(config: Config, inventory: Inventory, service: str | None, env: str,
                active: Mapping[str, str | None], min_healthy: str | None = None) -> SwitchPlan:
    """Which backends must be healthy for `service` to move to `env`. Pure."""
    svc = config.service(service)
    targets = tuple(b for b in inventory.for_service(svc.name) if b.env == env)
    if not targets:
        present = inventory.envs(svc.name)
        raise NoBackends(
            f"no backends of service {svc.name} in env {env} "
            f"(envs present: {', '.join(present) if present else 'none'}); traffic stays on "
            f"{recorded_or_default(svc, active.get(svc.name)) or 'what it is'}"
        )
    try:  # what routes now: the record, else the fallback (default_env, the only env)
        from_env = resolve_active_env(svc, inventory, active.get(svc.name))
    except ConfigError:
        from_env = None
    return SwitchPlan(service=svc.name, from_env=from_env, to_env=env, targets=targets,
                      required=required_count(len(targets), min_healthy))


def run_switch(core: Core, env: str, service: str | None = None, *, timeout: float = 60.0,
               min_healthy: str | None = None, force: bool = False, dry_run: bool = False,
               on_progress: Callable[[GateProgress], None] | None = None, lock_wait: float = 30.0,
               weight: int | None = None, analysed: bool = False, sticky: str | None = None) -> SwitchResult:
    """Gate, swap, verify, record. Raises HealthGateFailed (nothing changed) or ReloadFailed (restored).

    With `weight` (1-99) it is a canary step: `env` gets that share of the service's requests and the
    active env the rest; the record keeps the active env and notes the canary (State.canary). Without one,
    a canary of the service ends: promoted when `env` is the canary's env, else all traffic on `env`.
    `analysed`: the proxy logs the service's requests for a post-promotion analysis (State.analysed).
    `sticky` ("cookie", with `weight` only): a client stays on the env that served it while the weight does
    not go down (lbgen.sticky)."""
    clock = core.clock
    recorder = Timings(clock)
    started = recorder.started
    timings: dict[str, float] = {}
    with core.locked(f"switch {service or ''} to {env}".replace("  ", " "), recorder, wait=lock_wait,
                     lease=timeout + 120):
        world = core.read_world(reconcile=True, timings=recorder)
        with recorder.phase("reconcile"):
            core.proxy.preflight(world.live)
        state = world.state
        plan = plan_switch(core.config, world.inventory, service, env, world.active, min_healthy)
        check_sticky(core.config, plan.service, sticky, weight is not None)
        health = core.config.services[plan.service].health
        was_canary = state.canary.get(plan.service)
        outcome = _outcome(plan, weight, was_canary)
        result = SwitchResult(plan.service, plan.from_env, plan.to_env, outcome, forced=force,
                              notes=list(world.notes), timings=timings, weight=weight)

        with recorder.phase("gate"):
            t = clock()
            if dry_run:
                results = check_all(plan.targets, health, core.checker)
                healthy = [r.backend for r in results if r.ok]
                result.gate = GateResult(len(healthy) >= plan.required, healthy,
                                         [r for r in results if not r.ok], plan.required, clock() - t)
            elif not force:
                result.gate = gate(plan.targets, health, core.checker, timeout, plan.required,
                                   clock=clock, sleep=core.sleep, on_round=on_progress)
            else:
                core.log(event("gate-skipped", service=plan.service, env=env, reason="--force"))
        if not dry_run and result.gate is not None and not result.gate.passed:
            record(core, state, plan, Outcome.REFUSED, clock() - started, force, weight)
            raise HealthGateFailed(
                f"{env} not healthy after {result.gate.elapsed:.0f}s ({result.gate.summary()}); "
                f"{_traffic_stays(plan)}"
            )
        inventory = world.inventory
        if result.gate is not None and not dry_run:
            inventory = _with_gate_health(inventory, result.gate)

        state.health.pop(plan.service, None)  # the gate judges the new pool; earlier ejections do not apply
        if weight is not None:
            epoch = next_epoch(was_canary, env, weight, new_epoch()) if sticky else ""
            state.canary[plan.service] = Canary(env, weight, sticky, epoch)
        else:
            state.canary.pop(plan.service, None)
        if analysed and weight is None:
            state.analysed[plan.service] = env
        else:
            state.analysed.pop(plan.service, None)
        with recorder.phase("render"):
            overrides = {plan.service: env} if weight is None else None
            rendered = core.desired(world.with_inventory(inventory), overrides, state)
        result.generation = rendered.generation
        if dry_run:
            result.outcome = Outcome.DRY_RUN
            result.diff = core.diff(world.live, rendered)
            timings.update(recorder.finish().as_dict())
            return result
        if world.live == rendered.text and (weight is not None or was_canary is not None):
            # The proxy already serves this split (or this end of one): the record says so now.
            result.outcome = Outcome.UNCHANGED
            timings.update(recorder.finish().as_dict())
            if was_canary != state.canary.get(plan.service):
                record(core, state, plan, outcome, clock() - started, force, weight)
            return result
        if world.live == rendered.text:
            result.outcome = Outcome.UNCHANGED
            timings.update(recorder.finish().as_dict())
            # A switch killed (or cut off from Docker) between its reload and its record made `env` live
            # without saying so in the record: record it now, so history and `previous` match the proxy. A live
            # env that was only assumed (default_env) is recorded too: that is how one ends the warning.
            believed = recorded_or_default(core.config.services[plan.service],
                                           state.recorded_active.get(plan.service))
            try:
                if believed != env:
                    record(core, state, replace(plan, from_env=believed), Outcome.SWITCHED, clock() - started, force)
                    result.notes.append(f"{env} was live but not recorded (an interrupted switch); recorded it")
                elif not state.recorded(plan.service):  # no switch happened: the record, not the history
                    state.recorded_active[plan.service] = env
                    core.store.save(state)
                    result.notes.append(f"{env} was live but only assumed (default_env); recorded it as active")
            except LbgenError as e:
                result.notes.append(f"{env} is live, but the record could not be written: {e}")
            return result
        main = core.proxy.main_to_write(rendered.main)
        core.require_main_context(main)
        # A canary's weight step that changes only servers' weights (HAProxy): the runtime API sets them.
        runtime = core.proxy.kind.runtime_plan(world.live, rendered.text) if weight is not None and main is None else None
        core.proxy.install(rendered.text, rendered.files, world.live, main=rendered.main, timings=recorder)

        restored = False
        try:
            if runtime is not None:
                try:  # the runtime state checked against the file; else a reload, verified (restored on failure)
                    _, note = core.proxy.go_live(rendered.text, rendered.generation, runtime, timings=recorder)
                except ReloadFailed:
                    restored = True
                    raise
                result.notes += [note] if note else []
            else:
                with recorder.phase("reload"):
                    core.proxy.reload()
            with recorder.phase("verify"):
                if runtime is None:
                    core.proxy.wait_serving(rendered.generation)
                if not force:
                    after = check_confirmed(plan.targets, health, core.checker, core.sleep)
                    if sum(r.ok for r in after) < plan.required:
                        failing = "; ".join(r.describe() for r in after if not r.ok)
                        raise ReloadFailed(f"{env} stopped passing its health check after the switch ({failing})")
        except ReloadFailed as e:
            if not restored:
                core.proxy.rollback_to_previous()
            _restore_canary(state, plan.service, was_canary)
            state.analysed.pop(plan.service, None)
            record(core, state, plan, Outcome.ROLLED_BACK, clock() - started, force, weight)
            done = "" if restored else "restored the previous config, "
            raise ReloadFailed(f"{e}; {done}{_traffic_stays(plan)}") from e
        core.check_main_context(main is not None)
        try:
            with recorder.phase("record"):
                record(core, state, plan, outcome, clock() - started, force, weight)
        except LbgenError as e:
            result.notes.append(f"switched, but the history could not be recorded: {e}")
        timings.update(recorder.finish().as_dict())
        return result


def record(core: Core, state: State, plan: SwitchPlan, outcome: Outcome, duration: float, forced: bool,
           weight: int | None = None) -> None:
    """Add a history entry (and, for a switch, the new active/previous env) to `state`, loaded under the
    same lock, and save it."""
    who = holder_identity()
    state.record(HistoryEntry(time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), service=plan.service,
                              from_env=plan.from_env, to_env=plan.to_env, outcome=outcome,
                              duration=round(duration, 3), forced=forced, host=who["host"], user=who["user"],
                              weight=weight))
    if outcome is Outcome.SWITCHED:
        if plan.from_env != plan.to_env:
            state.previous[plan.service] = plan.from_env
        state.recorded_active[plan.service] = plan.to_env
        state.health.pop(plan.service, None)  # the gate just judged the new pool; count afresh
    core.store.save(state)


def _outcome(plan: SwitchPlan, weight: int | None, canary: Canary | None) -> Outcome:
    """What a switch that succeeds will record: a canary step, the end of a canary (all traffic back on
    the active env), or a switch (a promotion of the canary's env is one)."""
    if weight is not None:
        if not 1 <= weight <= 99:
            raise UsageError(f"--weight {weight}: expected 1-99 (percent of requests to {plan.to_env}); "
                             f"a switch without --weight moves all traffic")
        if plan.from_env is None or plan.from_env == plan.to_env:
            raise UsageError(f"--weight: {plan.to_env} is already the active env of service {plan.service}; "
                             f"a canary sends a share of requests to another env")
        return Outcome.CANARY
    if canary is not None and plan.to_env == plan.from_env:
        return Outcome.CANARY_ENDED
    return Outcome.SWITCHED


def check_sticky(config: Config, service: str | None, sticky: str | None, canary: bool) -> None:
    """`--sticky` names a known kind, goes with a canary (`canary`: a weight or steps), and not with a TCP
    service (no cookies). Raises UsageError, before anything changes."""
    if sticky is None:
        return
    if sticky not in STICKY_KINDS:
        raise UsageError(f"--sticky {sticky}: expected {' or '.join(STICKY_KINDS)}")
    if not canary:
        raise UsageError("--sticky goes with --weight or --steps: it keeps a canary's clients on their env")
    svc = config.service(service)
    if svc.mode == "tcp":
        raise UsageError(f"--sticky cookie: service {svc.name} is mode: tcp, which has no cookies "
                         f"(a --weight canary without --sticky works for TCP services)")


def _restore_canary(state: State, service: str, canary: Canary | None) -> None:
    if canary is None:
        state.canary.pop(service, None)
    else:
        state.canary[service] = canary


def _with_gate_health(inventory: Inventory, result: GateResult) -> Inventory:
    """Backends that just passed the gate (Docker HEALTHCHECK included) count as Docker-healthy now,
    though discovery saw them still `starting`."""
    passed = {b.id for b in result.healthy}
    return Inventory(
        tuple(replace(b, docker_health="healthy") if b.id in passed and b.docker_health else b
              for b in inventory.backends),
        inventory.skipped,
    )


def _traffic_stays(plan: SwitchPlan) -> str:
    return f"traffic stays on {plan.from_env}" if plan.from_env else "the live config is unchanged"
