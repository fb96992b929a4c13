"""Progressive delivery: canary steps (`switch --steps`) and the analysis after a full switch
(`switch --analysis`), each window judged from the proxy's own figures (lbgen.analysis); on a breach all
traffic goes back to the previous env at once, and AnalysisFailed (exit 8) says why, with the figures."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from lbgen.analysis import LogReader, Sample, Thresholds, Verdict, env_map, judge
from lbgen.core import Core
from lbgen.errors import AnalysisFailed, LbgenError, UsageError
from lbgen.events import event, warning
from lbgen.model import AnalysisRecord, HistoryEntry, Outcome
from lbgen.state import holder_identity
from lbgen.switch import SwitchResult, run_switch

POLL = 1.0  # seconds between reads of the proxy's log during a window: a breach is acted on this soon
LAG = 0.3  # seconds a log line may take to reach the engine after its request ended


@dataclass(frozen=True)
class Window:
    """One analysed window: what it followed (a canary weight, or 100 after a full switch) and its verdict."""

    weight: int
    seconds: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "seconds": round(self.seconds, 3), **self.verdict.to_dict()}


def run_steps(core: Core, env: str, service: str | None, steps: tuple[int, ...], step_time: float,
              thresholds: Thresholds, *, wall: Callable[[], float] = time.time, poll: float = POLL,
              lock_wait: float = 30.0, on_window: Callable[[Window], None] | None = None,
              sticky: str | None = None, **switch_options: Any) -> SwitchResult:
    """Walk `steps` (percent of requests to `env`; 100 promotes), each a gated canary step (`sticky`, as
    run_switch takes it) followed by a window of `step_time` seconds analysed before the next. Returns the last step's result (the promotion,
    when the steps reach 100). Raises AnalysisFailed once the traffic is back on the active env."""
    if not steps:
        raise UsageError("--steps: no steps")
    _http_only(core, service)
    result: SwitchResult | None = None
    windows: list[Window] = []
    for weight in steps:
        if weight >= 100:
            result = run_switch(core, env, service, lock_wait=lock_wait, **switch_options)
            break
        opened = wall()  # the window counts from the step's reload on, not from its record
        result = run_switch(core, env, service, weight=weight, lock_wait=lock_wait, sticky=sticky,
                            **switch_options)
        core.log(event("canary", service=result.service, env=env, weight=weight, active=result.from_env))
        window = analyse(core, result.service, env, result.from_env or "", weight, step_time, thresholds,
                         wall=wall, poll=poll, lock_wait=lock_wait, promoted=False, opened=opened)
        windows.append(window)
        if on_window is not None:
            on_window(window)
    assert result is not None
    result.analysis = [w.to_dict() for w in windows]
    return result


def run_analysed_switch(core: Core, env: str, service: str | None, duration: float, thresholds: Thresholds, *,
                        wall: Callable[[], float] = time.time, poll: float = POLL, lock_wait: float = 30.0,
                        on_window: Callable[[Window], None] | None = None, **switch_options: Any) -> SwitchResult:
    """A full switch to `env`, then `duration` seconds of analysis of `env` (Argo's post-promotion
    analysis); on a breach the previous env is active again (AnalysisFailed)."""
    _http_only(core, service)
    opened = wall()
    result = run_switch(core, env, service, lock_wait=lock_wait, analysed=True, **switch_options)
    if result.from_env is None or result.from_env == env:
        _end_analysis(core, result.service, lock_wait)
        return result
    window = analyse(core, result.service, env, result.from_env, 100, duration, thresholds, wall=wall, poll=poll,
                     lock_wait=lock_wait, promoted=True, opened=opened)
    if on_window is not None:
        on_window(window)
    _end_analysis(core, result.service, lock_wait)
    result.analysis = [window.to_dict()]
    return result


def _slot_names(core: Core, service: str) -> dict[str, str]:
    """HAProxy's server slot names in the live config -> the backend each holds (empty for nginx)."""
    layout = core.proxy.kind.layout(core.proxy.read_live()) or {}
    return {slot.name: slot.holds for slot in layout.get(service, ()) if slot.holds is not None}


def _http_only(core: Core, service: str | None) -> None:
    """Analysis judges HTTP responses: a TCP service has none (a plain `--weight` canary works for it)."""
    services = core.config.services
    for name in [service] if service else list(services):
        if name in services and services[name].mode == "tcp":
            raise UsageError(f"service {name} is mode: tcp: canary analysis judges HTTP responses "
                             f"(a --weight canary without analysis works for TCP services)")


def analyse(core: Core, service: str, env: str, stable: str, weight: int, duration: float,
            thresholds: Thresholds, *, wall: Callable[[], float], poll: float, lock_wait: float,
            promoted: bool, opened: float | None = None) -> Window:
    """Read the proxy's log every `poll` seconds for `duration` seconds (from now), judging `env` on
    everything seen since `opened` (default: now); a breach puts all traffic back on `stable` and raises
    AnalysisFailed."""
    backends = core.read_world().inventory.for_service(service)
    reader = LogReader(core.proxy_engine, core.proxy.ref(), core.config.proxy.kind, service,
                       env_map(backends, stable),
                       slots=(lambda: _slot_names(core, service)) if core.config.proxy.spare_servers else None)
    started = wall()
    deadline = started + duration
    samples: list[Sample] = []
    read_to = min(opened, started) if opened is not None else started
    while True:
        now = wall()
        final = now >= deadline + LAG
        if not final:
            core.sleep(max(0.0, min(poll, deadline + LAG - now)))
            now = wall()
            final = now >= deadline + LAG
        until = min(now - LAG, deadline) if not final else deadline
        try:
            if until > read_to:
                samples += reader.read(read_to, until)
                read_to = until
            verdict = judge(samples, env, [stable], thresholds, final=final)
        except LbgenError as e:  # no figures, no canary: it is not left running unjudged
            verdict = Verdict(True, False, f"cannot read the proxy's log for the analysis of {env} ({e})", ())
        if verdict.breach:
            put_back(core, service, env, stable, verdict, weight, promoted=promoted, lock_wait=lock_wait)
            raise AnalysisFailed(f"{verdict.message}; all traffic back on {stable}")
        if final:
            if verdict.low_traffic:
                core.log(warning(f"{verdict.message}; counted as a pass (--on-low-traffic pass)"))
            keep_figures(core, service, _record(env, weight, verdict), lock_wait)
            core.log(event("analysis", service=service, env=env, weight=weight, result="pass",
                           **{f.env: f"{f.errors}/{f.requests}" for f in verdict.figures}))
            return Window(weight, wall() - started, verdict)


def put_back(core: Core, service: str, env: str, stable: str, verdict: Verdict, weight: int, *, promoted: bool,
             lock_wait: float) -> None:
    """All of `service`'s traffic on `stable` again (the canary ended; after a promotion, `stable` active
    again), rendered, installed, reloaded and verified; recorded as analysis-failed."""
    started = core.clock()
    with core.lock(f"analysis failed: {service} back to {stable}", wait=lock_wait):
        world = core.read_world(reconcile=True)
        state = world.state
        state.canary.pop(service, None)
        state.analysed.pop(service, None)
        state.analysis[service] = _record(env, weight, verdict)
        overrides: dict[str, str | None] = {}
        if promoted:
            state.recorded_active[service] = stable
            state.previous[service] = env
            overrides[service] = stable
        rendered = core.desired(world, overrides, state)
        if world.live != rendered.text:
            core.proxy.install(rendered.text, rendered.files, world.live, main=rendered.main)
            core.proxy.activate(rendered.generation)
        who = holder_identity()
        state.record(HistoryEntry(time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), service=service,
                                  from_env=env, to_env=stable, outcome=Outcome.ANALYSIS_FAILED,
                                  duration=round(core.clock() - started, 3), host=who["host"], user=who["user"],
                                  detail=verdict.message))
        core.store.save(state)
    core.log(event("analysis-failed", service=service, env=env, back_on=stable, reason=verdict.message))


def keep_figures(core: Core, service: str, record: AnalysisRecord, lock_wait: float) -> None:
    """Keep a passed window's figures in the record, for `lbgen status`."""
    with core.lock(f"record the analysis of {service}", wait=lock_wait):
        state = core.store.load()
        state.analysis[service] = record
        core.store.save(state)


def _record(env: str, weight: int, verdict: Verdict) -> AnalysisRecord:
    return AnalysisRecord(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), env, weight, not verdict.breach,
                          verdict.message, verdict.figures)


def _end_analysis(core: Core, service: str, lock_wait: float) -> None:
    """The post-promotion window is over: the proxy stops logging the service's requests for lbgen."""
    with core.lock(f"end of the analysis of {service}", wait=lock_wait):
        state = core.store.load()
        if state.analysed.pop(service, None) is None:
            return
        core.store.save(state)
        core.converge()
