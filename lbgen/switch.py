"""The blue-green switch: a pure plan, then one short orchestration — gate, swap, verify, record.

`run_switch` is what `lbgen switch` and `lbgen rollback` call, and what a deployment script calls from
Python through `Lbgen.switch()`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from lbgen.errors import HealthGateFailed, LbgenError, NoBackends, ReloadFailed
from lbgen.events import event
from lbgen.health import GateProgress, GateResult, check_all, gate, required_count
from lbgen.model import Backend, Inventory

if TYPE_CHECKING:
    from lbgen.app import Lbgen
    from lbgen.config import Config


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
    outcome: str  # switched, unchanged, dry-run
    forced: bool = False
    generation: str | None = None
    diff: str = ""
    gate: GateResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "service": self.service, "from_env": self.from_env, "to_env": self.to_env,
            "outcome": self.outcome, "forced": self.forced, "generation": self.generation,
            "timings": {k: round(v, 4) for k, v in self.timings.items()}, "notes": self.notes,
        }
        if self.gate is not None:
            data["gate"] = {"passed": self.gate.passed, "required": self.gate.required,
                            "healthy": [b.name for b in self.gate.healthy],
                            "failing": [{"name": r.backend.name, "detail": r.detail} for r in self.gate.failing]}
        if self.outcome == "dry-run":
            data["diff"] = self.diff
        return data


def plan_switch(config: Config, inventory: Inventory, service: str | None, env: str,
                active: dict[str, str | None], min_healthy: str | None = None) -> SwitchPlan:
    """Which backends must be healthy for `service` to move to `env`. Pure."""
    svc = config.service(service)
    targets = tuple(b for b in inventory.for_service(svc.name) if b.env == env)
    if not targets:
        present = inventory.envs(svc.name)
        raise NoBackends(
            f"no backends of service {svc.name} in env {env} "
            f"(envs present: {', '.join(present) if present else 'none'}); traffic stays on "
            f"{active.get(svc.name) or 'what it is'}"
        )
    return SwitchPlan(service=svc.name, from_env=active.get(svc.name), to_env=env, targets=targets,
                      required=required_count(len(targets), min_healthy))


def run_switch(app: Lbgen, env: str, service: str | None = None, timeout: float = 60.0,
               min_healthy: str | None = None, force: bool = False, dry_run: bool = False,
               on_progress: Callable[[GateProgress], None] | None = None, lock_wait: float = 30.0) -> SwitchResult:
    """Gate, swap, verify, record. Raises HealthGateFailed (nothing changed) or ReloadFailed (restored)."""
    clock = app.clock
    started = clock()
    timings: dict[str, float] = {}
    with app.lock(f"switch {service or ''} to {env}".replace("  ", " "), wait=lock_wait, lease=timeout + 120):
        live, note = app.proxy.reconcile()
        notes = [note] if note else []
        app.proxy.preflight(live)
        inventory = app.discover()
        state = app.store.load()
        active = app.active_envs(live, state)
        plan = plan_switch(app.config, inventory, service, env, active, min_healthy)
        health = app.config.services[plan.service].health
        result = SwitchResult(plan.service, plan.from_env, plan.to_env, "switched", forced=force, notes=notes,
                              timings=timings)

        t = clock()
        if dry_run:
            results = check_all(plan.targets, health, app.checker)
            healthy = [r.backend for r in results if r.ok]
            result.gate = GateResult(len(healthy) >= plan.required, healthy, [r for r in results if not r.ok],
                                     plan.required, clock() - t)
        elif not force:
            result.gate = gate(plan.targets, health, app.checker, timeout, plan.required,
                               clock=clock, sleep=app.sleep, on_round=on_progress)
            if not result.gate.passed:
                app.record(plan, "refused", clock() - started, force, state)
                raise HealthGateFailed(
                    f"{env} not healthy after {result.gate.elapsed:.0f}s ({result.gate.summary()}); "
                    f"{_traffic_stays(plan)}"
                )
        else:
            app.log(event("gate-skipped", service=plan.service, env=env, reason="--force"))
        timings["gate"] = clock() - t
        if result.gate is not None and not dry_run:
            inventory = _with_gate_health(inventory, result.gate)

        t = clock()
        state.health.pop(plan.service, None)  # the gate judges the new pool; earlier ejections do not apply
        rendered = app.desired(inventory, live, {plan.service: env}, state)
        result.generation = rendered.generation
        if dry_run:
            result.outcome = "dry-run"
            result.diff = app.diff(live, rendered.text)
            timings["render"] = clock() - t
            return result
        if live == rendered.text:
            result.outcome = "unchanged"
            timings["render"] = clock() - t
            # A switch killed (or cut off from Docker) between its reload and its record made `env` live
            # without saying so in state.json: record it now, so history and `previous` match the proxy.
            believed = state.recorded_active.get(plan.service) or app.config.services[plan.service].default_env
            if believed is not None and believed != env:
                try:
                    app.record(replace(plan, from_env=believed), "switched", clock() - started, force, state)
                    result.notes.append(f"{env} was live but not recorded (an interrupted switch); recorded it")
                except LbgenError as e:
                    result.notes.append(f"{env} is live, but the history could not be recorded: {e}")
            return result
        app.proxy.install(rendered.text)
        timings["render_install_validate"] = clock() - t

        t = clock()
        try:
            app.proxy.reload()
            timings["reload"] = clock() - t
            t = clock()
            app.proxy.wait_serving(rendered.generation)
            if not force:
                after = check_all(plan.targets, health, app.checker)
                if sum(r.ok for r in after) < plan.required:
                    failing = "; ".join(r.describe() for r in after if not r.ok)
                    raise ReloadFailed(f"{env} stopped passing its health check after the switch ({failing})")
        except ReloadFailed as e:
            app.proxy.rollback_to_previous()
            app.record(plan, "rolled-back", clock() - started, force, state)
            raise ReloadFailed(f"{e}; restored the previous config, {_traffic_stays(plan)}") from e
        timings["verify"] = clock() - t
        try:
            app.record(plan, "switched", clock() - started, force, state)
        except LbgenError as e:
            result.notes.append(f"switched, but the history could not be recorded: {e}")
        timings["total"] = clock() - started
        return result


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


def history_entry(plan: SwitchPlan, outcome: str, duration: float, forced: bool, who: dict[str, str]) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "service": plan.service, "from": plan.from_env, "to": plan.to_env,
        "host": who["host"], "user": who["user"], "outcome": outcome,
        "duration": round(duration, 3), "forced": forced,
    }
