"""Which env is active for a service, and which backends each service's pool holds. Pure.

This is the one place that decides the active env: a recorded switch wins, then the service's
`default_env`, then the only env present.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Callable, Collection, Mapping

from lbgen.canary import split_weights
from lbgen.config import Config, ServiceConfig
from lbgen.errors import ConfigError
from lbgen.model import Backend, Canary, Inventory, Pool


def recorded_or_default(service: ServiceConfig, recorded: str | None) -> str | None:
    """The env a service is believed to route to without looking at what is running."""
    return recorded if recorded is not None else service.default_env


def resolve_active_env(service: ServiceConfig, inventory: Inventory, recorded: str | None = None) -> str | None:
    believed = recorded_or_default(service, recorded)
    if believed is not None:
        return believed
    envs = inventory.envs(service.name)
    if len(envs) <= 1:
        return envs[0] if envs else None
    raise ConfigError(
        f"service {service.name} has envs {', '.join(envs)} and no active env: set "
        f"services.{service.name}.default_env, or run `lbgen switch --service {service.name} --env ENV`"
    )


_SERVER_ORDER = attrgetter("backup", "name", "address", "port")  # a pool's servers: primaries first, then by name


def build_pools(config: Config, inventory: Inventory, active: Mapping[str, str | None] | None = None,
                ejected: Collection[str] = (), canary: Mapping[str, Canary] | None = None) -> list[Pool]:
    """One Pool per configured service, in config order.

    `active` holds recorded or requested envs. `ejected` holds ids of backends that `lbgen health
    --apply` found down; they leave the pool, except that a pool is never emptied by ejection (fail
    open: if every server of a service is ejected, all stay). Containers whose Docker HEALTHCHECK is
    not `healthy` are never routed.

    `canary` (State.canary) adds a canary env's primaries to a service's pool, weighted by lbgen.canary so
    that they get the canary's share of requests; ejection never empties either side.
    """
    active = active or {}
    pools = []
    for name, service in config.services.items():
        env = resolve_active_env(service, inventory, active.get(name))
        kept = _routable(inventory, name, ejected, lambda b: b.env is None or b.env == env)
        step = (canary or {}).get(name)
        if step is not None and step.env != env:
            extra = _routable(inventory, name, ejected, lambda b: b.env == step.env and not b.backup)
            weighted = split_weights([b for b in kept if not b.backup], extra, step.weight)
            kept = list(weighted) + [b for b in kept if b.backup]
        servers = tuple(sorted(kept, key=_SERVER_ORDER))
        pools.append(Pool(service=name, active_env=env, servers=servers))
    return pools


def _routable(inventory: Inventory, service: str, ejected: Collection[str],
              wanted: Callable[[Backend], bool]) -> list[Backend]:
    """The service's backends `wanted` picks that Docker does not call unhealthy, minus the ejected ones
    unless that would leave none (fail open)."""
    candidates = [b for b in inventory.for_service(service) if wanted(b) and b.docker_health in (None, "healthy")]
    kept = [b for b in candidates if b.id not in ejected]
    return kept or candidates
