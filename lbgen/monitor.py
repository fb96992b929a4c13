"""One pass of active health checks over every service's active env (`run_health`), and hysteresis across
passes (`advance`, `fold`): the only place that decides a backend's ejection; `lbgen health --apply` and
watch both end in `settle`. Which backends a pool holds, fail-open included, stays routing's decision;
the report's formats are lbgen.report's.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from lbgen.config import Config, HealthConfig
from lbgen.core import ApplyResult, Core, World
from lbgen.drift import Drift, find_drift
from lbgen.errors import LbgenError
from lbgen.expiry import served_certs
from lbgen.health import MAX_PARALLEL_CHECKS, Checker, CheckResult, check_groups
from lbgen.model import Backend, HealthCount, Inventory
from lbgen.render import parse_meta
from lbgen.report import BackendHealth, HealthReport, ServiceHealth, Transition
from lbgen.routing import build_pools
from lbgen.state import State
from lbgen.timings import Timings



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
    """One check of every backend of every service, all in one concurrent batch (lbgen.health.check_groups),
    so a pass takes about one `timeout` however many backends hang (up to `max_parallel` of them)."""
    checked = check_groups([(s.backends, s.health) for s in services], checker, max_parallel)
    return {s.name: tuple(results) for s, results in zip(services, checked)}


# --- hysteresis --------------------------------------------------------------------------------------

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
        parse_meta(world.live or ""), build_pools(config, world.inventory, world.active, world.state.ejected_ids(),
                                          world.state.canary),
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
    world = core.read_world(reconcile=True, inventory=inventory, timings=timings)
    state = world.state
    before = {svc: dict(counts) for svc, counts in state.health.items()}
    transitions = fold(state, targets_for(config, world.inventory, world.active), results)
    if state.health != before:
        core.store.save(state)
    for t in transitions:
        core.log(t.event())
    return transitions, core.converge(world.inventory, timings, world=world), world
