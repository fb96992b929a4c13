"""Drift: where the live config and what is running disagree. Backends the proxy still routes to that are
gone, stopped or paused, or that lbgen would now leave out; routable backends the live config leaves out.
Pure: `health` and `status` report it, `apply` (or watch) ends it."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Sequence

from lbgen.model import Inventory, Pool
from lbgen.render import LiveMeta


class DriftKind(str, enum.Enum):
    GONE = "gone"  # routed; no such container any more
    NOT_ROUTABLE = "not-routable"  # routed; discovery skips it now (not running: stopped or paused, ...)
    LEFT_OUT = "left-out"  # routed; lbgen would leave it out now (other env, ejected, Docker-unhealthy)
    NOT_ROUTED = "not-routed"  # routable now; the live config leaves it out


@dataclass(frozen=True)
class Drift:
    service: str
    backend: str  # container name
    kind: DriftKind
    detail: str = ""

    def describe(self) -> str:
        if self.kind is DriftKind.GONE:
            return f"{self.backend} is routed but gone"
        if self.kind is DriftKind.NOT_ROUTABLE:
            return f"{self.backend} is routed but {self.detail}"
        if self.kind is DriftKind.LEFT_OUT:
            return f"{self.backend} is routed but lbgen would leave it out now"
        return f"{self.backend} is routable but not routed"

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "kind": self.kind.value, "detail": self.describe()}


def find_drift(live: LiveMeta | None, pools: Sequence[Pool], inventory: Inventory) -> dict[str, tuple[Drift, ...]]:
    """Per service in `pools` (what lbgen would route now), how the live config differs. Empty when the
    live config does not list what it routes (none yet, or written by an older lbgen)."""
    if live is None or live.routed is None:
        return {}
    skipped = {s.name: s.reason for s in inventory.skipped}
    found = {b.name for b in inventory.backends}
    out: dict[str, tuple[Drift, ...]] = {}
    for pool in pools:
        routed = live.routed.get(pool.service, frozenset())
        wanted = {b.name for b in pool.servers}
        items = []
        for name in sorted(routed - wanted):
            if name in skipped:
                items.append(Drift(pool.service, name, DriftKind.NOT_ROUTABLE, skipped[name]))
            elif name in found:
                items.append(Drift(pool.service, name, DriftKind.LEFT_OUT))
            else:
                items.append(Drift(pool.service, name, DriftKind.GONE))
        items += [Drift(pool.service, name, DriftKind.NOT_ROUTED) for name in sorted(wanted - routed)]
        if items:
            out[pool.service] = tuple(items)
    return out
