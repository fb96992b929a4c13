"""Which env is active for a service, and which backends each service's pool holds. Pure.

This is the one place that decides the active env: a recorded switch wins, then the service's
`default_env`, then the only env present.
"""
from __future__ import annotations

from typing import Collection, Mapping

from lbgen.config import Config, ServiceConfig
from lbgen.errors import ConfigError
from lbgen.model import Inventory, Pool


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


def build_pools(config: Config, inventory: Inventory, active: Mapping[str, str | None] | None = None,
                ejected: Collection[str] = ()) -> list[Pool]:
    """One Pool per configured service, in config order.

    `active` holds recorded or requested envs. `ejected` holds ids of backends that `lbgen health
    --apply` found down; they leave the pool, except that a pool is never emptied by ejection (fail
    open: if every server of a service is ejected, all stay). Containers whose Docker HEALTHCHECK is
    not `healthy` are never routed.
    """
    active = active or {}
    pools = []
    for name, service in config.services.items():
        env = resolve_active_env(service, inventory, active.get(name))
        candidates = [
            b for b in inventory.for_service(name)
            if (b.env is None or b.env == env) and b.docker_health in (None, "healthy")
        ]
        kept = [b for b in candidates if b.id not in ejected]
        if not kept:
            kept = candidates
        servers = tuple(sorted(kept, key=lambda b: (b.backup, b.name, b.address, b.port)))
        pools.append(Pool(service=name, active_env=env, servers=servers))
    return pools
