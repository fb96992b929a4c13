"""`lbgen status`: per service, the active and previous env, the last switch and each backend's health and
routing; per proxy, which generation is live, served and wanted. Typed here, a dict only at the JSON edge."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lbgen.core import Core
from lbgen.drift import Drift, find_drift
from lbgen.health import check_groups
from lbgen.model import AnalysisRecord, Backend, Canary, HistoryEntry, Maintenance
from lbgen.render import parse_meta
from lbgen.routing import build_pools


@dataclass(frozen=True)
class BackendStatus:
    backend: Backend
    healthy: bool
    detail: str
    routed: bool  # the live config routes to it (what lbgen would route, when the config does not say)
    drift: Drift | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.backend.to_dict(), "healthy": self.healthy, "health_detail": self.detail,
                "routed": self.routed, "drift": self.drift.describe() if self.drift else None}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    active_env: str | None
    previous_env: str | None
    last_switch: HistoryEntry | None
    envs: tuple[str, ...]
    backends: tuple[BackendStatus, ...]
    active_recorded: bool = True  # False: no switch on record, the active env is assumed (default_env)
    drift: tuple[Drift, ...] = ()  # every difference, gone backends (which have no row) included
    maintenance: Maintenance | None = None  # `lbgen maintenance on`
    canary: Canary | None = None  # a canary in progress (`switch --weight`)
    analysis: AnalysisRecord | None = None  # the last analysed window (`switch --steps` / `--analysis`)

    def to_dict(self) -> dict[str, Any]:
        return {"active_env": self.active_env, "active_env_recorded": self.active_recorded,
                "previous_env": self.previous_env, "canary": self.canary.to_dict() if self.canary else None,
                "analysis": self.analysis.to_dict() if self.analysis else None,
                "maintenance": self.maintenance.to_dict() if self.maintenance else None,
                "last_switch": self.last_switch.to_dict() if self.last_switch else None,
                "envs": list(self.envs), "backends": [b.to_dict() for b in self.backends],
                "drift": [d.to_dict() for d in self.drift]}


@dataclass(frozen=True)
class ProxyStatus:
    container: str
    kind: str
    live_generation: str | None
    # The generation the proxy serves: the one its status listener names (loaded by a reload), or the
    # file's when the changes since went live through HAProxy's runtime API and its servers match the file
    # (served_via "runtime"; docs/haproxy-runtime.md).
    served_generation: str | None
    in_sync: bool
    rendered_generation: str
    served_via: str = "reload"

    def to_dict(self) -> dict[str, Any]:
        return {"container": self.container, "kind": self.kind, "live_generation": self.live_generation,
                "served_generation": self.served_generation, "served_via": self.served_via,
                "in_sync": self.in_sync, "rendered_generation": self.rendered_generation}


@dataclass(frozen=True)
class StatusReport:
    proxy: ProxyStatus
    services: tuple[ServiceStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"proxy": self.proxy.to_dict(), "services": {s.name: s.to_dict() for s in self.services}}


def build_status(core: Core) -> StatusReport:
    """Read the world once, check every backend once (those of every service in one concurrent batch), and
    ask the proxy what it serves."""
    world = core.repair(core.read_world())
    rendered = core.desired(world)
    pools = build_pools(core.config, world.inventory, rendered.active, world.state.ejected_ids(),
                        world.state.canary)
    live_meta = parse_meta(world.live or "")
    drift = find_drift(live_meta, pools, world.inventory)
    if live_meta is not None and live_meta.routed is not None:
        routed = {(svc, name) for svc, names in live_meta.routed.items() for name in names}
    else:
        routed = {(pool.service, b.name) for pool in pools for b in pool.servers}
    served = core.proxy.serving(world.live)
    services = []
    names = list(core.config.services)
    checked = check_groups([(world.inventory.for_service(name), core.config.services[name].health)
                            for name in names], core.checker)
    for name, results in zip(names, checked):
        by_backend = {d.backend: d for d in drift.get(name, ())}
        services.append(ServiceStatus(
            name=name, active_env=rendered.active.get(name), previous_env=world.state.previous.get(name),
            last_switch=world.state.last_switch(name), envs=tuple(world.inventory.envs(name)),
            backends=tuple(BackendStatus(r.backend, r.ok, r.detail, (name, r.backend.name) in routed,
                                         by_backend.get(r.backend.name)) for r in results),
            active_recorded=world.active_recorded(name), drift=drift.get(name, ()),
            maintenance=world.state.maintenance.get(name), canary=world.state.canary.get(name),
            analysis=world.state.analysis.get(name),
        ))
    proxy = ProxyStatus(container=core.config.proxy.container, kind=core.config.proxy.kind,
                        live_generation=live_meta.generation if live_meta else None,
                        served_generation=served.generation, in_sync=world.live == rendered.text,
                        rendered_generation=rendered.generation, served_via=served.via)
    return StatusReport(proxy, tuple(services))
