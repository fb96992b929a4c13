"""The canary's weights plan: how one pool holding two envs gives the canary env its share of requests,
whatever the number of backends in each env. Pure; only routing.build_pools applies it.

Each primary server's weight is its env's share (the canary's `weight` percent, the rest for the active
env) times its own label weight over its env's total label weight; all of them are then scaled by one
common factor so that the largest is 256 (HAProxy's maximum; nginx takes any positive integer) and
rounded, at least 1. Backups keep their weights: they only serve when every primary is down.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from lbgen.model import Backend

MAX_WEIGHT = 256


def split_weights(stable: Sequence[Backend], canary: Sequence[Backend], weight: int) -> tuple[Backend, ...]:
    """`stable` (the active env's primaries, env-less ones included) and `canary` (the canary env's
    primaries), weighted so that the canary gets `weight` percent of requests. When either side is
    empty the other is returned as it is (it gets everything anyway)."""
    if not stable or not canary:
        return tuple(stable) + tuple(canary)
    shares = _shares(stable, 100 - weight) + _shares(canary, weight)
    scale = MAX_WEIGHT / max(x for _, x in shares)
    return tuple(replace(b, weight=max(1, round(x * scale))) for b, x in shares)


def canary_share(servers: Sequence[Backend], env: str) -> float:
    """The percentage of requests weighted round robin sends to `env`'s primaries (tests, status)."""
    primaries = [s for s in servers if not s.backup]
    total = sum(s.weight for s in primaries)
    return 100.0 * sum(s.weight for s in primaries if s.env == env) / total if total else 0.0


def _shares(backends: Sequence[Backend], percent: int) -> list[tuple[Backend, float]]:
    total = sum(b.weight for b in backends)
    return [(b, percent * b.weight / total) for b in backends]
