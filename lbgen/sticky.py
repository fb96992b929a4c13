"""A sticky canary (`switch --weight N --sticky cookie`): the cookie that keeps a client on the env that served
it, its epoch, and what the templates need to route by it. Pure; only render.py builds the view, only the
switch picks the epoch.

The cookie is `lbgen_<service>`; its value starts with the env that served and the canary's epoch
(`green.1f2e3d4c`). A cookie of another epoch matches nothing, so the client is split by weight again and
given a new one. The epoch stays while the weight goes up or stays, and is new when the canary starts or its
weight goes down: a client that landed on the canary env is not held there at a lower weight. When the
canary ends (rollback, a breach, promotion) the config has no cookie rule at all.

nginx (no sticky module in open source): a map of the request's cookie picks an upstream holding one env's
servers (`lbgen_web.green`), any other request goes to the weighted split (`lbgen_web`), and a map of the
address that answered sets the cookie naming its env. HAProxy: its own cookie persistence, one value per
server (`green.1f2e3d4c.web-green-1`): servers sharing a value would all send their clients to the first of
them, and HAProxy 2.6's runtime API cannot set a server's cookie, so a server line whose cookie changes is a
structural change and reloads (docs/haproxy-runtime.md).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Sequence

from lbgen.model import Backend, Canary


def cookie_name(service: str) -> str:
    return f"lbgen_{service}"


def new_epoch() -> str:
    return secrets.token_hex(4)


def next_epoch(previous: Canary | None, env: str, weight: int, fresh: str) -> str:
    """The epoch of a sticky canary step to `env` at `weight` after `previous` (the canary running, if any):
    the same while the same env's weight does not go down and it was sticky already, else `fresh`."""
    if (previous is not None and previous.sticky is not None and previous.epoch and previous.env == env
            and weight >= previous.weight):
        return previous.epoch
    return fresh


def variable_suffix(service: str) -> str:
    """A service name as the tail of an nginx variable name ([A-Za-z0-9_] only), one to one: `_` -> `__`,
    `-` -> `_0`."""
    return service.replace("_", "__").replace("-", "_0")


@dataclass(frozen=True)
class StickyView:
    """What a template needs for a sticky canary of one service."""

    service: str
    epoch: str
    stable_env: str  # the active env (env-less backends count as its)
    canary_env: str
    stable: tuple[Backend, ...]  # the servers of each side, as the split weighted them (backups: stable's)
    canary: tuple[Backend, ...]

    @property
    def cookie(self) -> str:
        return cookie_name(self.service)

    @property
    def var(self) -> str:
        return variable_suffix(self.service)

    @property
    def sides(self) -> tuple[tuple[str, tuple[Backend, ...]], ...]:
        return (self.stable_env, self.stable), (self.canary_env, self.canary)

    def env_of(self, backend: Backend) -> str:
        return self.canary_env if backend.env == self.canary_env else self.stable_env

    def value(self, env: str) -> str:
        """The cookie value nginx gives a client `env` served."""
        return f"{env}.{self.epoch}"

    def server_value(self, backend: Backend) -> str:
        """HAProxy: the cookie value of one server (unique in its backend)."""
        return f"{self.env_of(backend)}.{self.epoch}.{backend.name}"

    def request_regex(self, env: str) -> str:
        """nginx: a Cookie header carrying this canary's cookie for `env` (names, envs and the epoch are
        [a-z0-9_-] and hex: nothing to escape)."""
        return rf"(^|;)\s*{self.cookie}={re.escape(self.value(env))}\s*(;|$)"

    def set_cookie(self, env: str) -> str:
        return f"{self.cookie}={self.value(env)}; Path=/; HttpOnly"

    def address_regex(self, backend: Backend) -> str:
        """nginx: `$upstream_addr` whose last address (after retries: `a:80, b:80`) is this backend's."""
        return rf"(^|\s){re.escape(backend.endpoint)}$"


def sticky_view(service: str, canary: Canary | None, active_env: str | None,
                servers: Sequence[Backend]) -> StickyView | None:
    """The view of a sticky canary of `service` whose pool holds `servers`; None when the canary is not
    sticky or one side has no primary server (then everything goes to the other side anyway)."""
    if canary is None or canary.sticky is None or active_env is None or canary.env == active_env:
        return None
    canary_side = tuple(s for s in servers if s.env == canary.env)
    stable_side = tuple(s for s in servers if s.env != canary.env)
    if not any(not s.backup for s in canary_side) or not any(not s.backup for s in stable_side):
        return None
    return StickyView(service, canary.epoch, active_env, canary.env, stable_side, canary_side)
