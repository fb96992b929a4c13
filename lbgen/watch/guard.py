"""What watch routes when discovery cannot be taken at its word: backends that are stopping leave at once,
and a pool the last good apply filled is never emptied because discovery answered nothing for it (a
transient failure or an engine still starting containers must not take a service off the air)."""
from __future__ import annotations

from typing import Mapping

from lbgen.config import Config
from lbgen.model import Backend, Inventory
from lbgen.routing import build_pools
from lbgen.sources import sort_backends


def without_stopping(inventory: Inventory, stopping: dict[str, float], now: float, ttl: float) -> Inventory:
    """`inventory` without the containers in `stopping` (id -> when its kill/stop/die arrived); entries
    older than `ttl` are forgotten (removed from `stopping`)."""
    for cid, since in list(stopping.items()):
        if now - since > ttl:
            del stopping[cid]
    if not stopping:
        return inventory
    return Inventory(tuple(b for b in inventory.backends if b.id not in stopping), inventory.skipped)


def keep_last_known(config: Config, inventory: Inventory, active: Mapping[str, str | None],
                    last_pools: Mapping[str, tuple[Backend, ...]]) -> tuple[list[str], Inventory]:
    """The services whose pool discovery left empty although the last apply routed backends, and the
    inventory with those last known backends put back."""
    guarded: list[str] = []
    kept: list[Backend] = []
    for pool in build_pools(config, inventory, active, ()):
        previous = last_pools.get(pool.service, ())
        if pool.servers or not previous:
            continue
        guarded.append(pool.service)
        kept += previous
    if not kept:
        return guarded, inventory
    present = {b.id for b in inventory.backends}
    extra = tuple(b for b in kept if b.id not in present)
    return guarded, Inventory(sort_backends(inventory.backends + extra), inventory.skipped)
