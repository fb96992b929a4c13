"""lbgen's plain data model: backends as discovered, and what is routed. No I/O here."""
from __future__ import annotations

import enum
import functools
import itertools
import re
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any, Iterable, Mapping


STICKY_KINDS = ("cookie",)  # `switch --sticky`: how a canary keeps a client on the env that served it
EPOCH_RE = re.compile(r"[0-9a-f]{1,16}")  # a sticky canary's epoch, part of its cookies' values

# Monitoring-plugin statuses (`lbgen health` exits with them).
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

@dataclass(frozen=True)
class Backend:
    """One routable container: every field has passed lbgen.grammar."""

    service: str
    env: str | None
    name: str
    id: str
    address: str
    port: int
    weight: int = 1
    backup: bool = False
    docker_health: str | None = None  # "healthy", "unhealthy", "starting"; None without a HEALTHCHECK
    source: str = "docker"  # docker, swarm, file
    network: str | None = None  # the network it was found on (its address is its IP there); None from a file
    swarm_service: str | None = None  # for a Swarm task: its service's name
    node: str | None = None  # for a Swarm task: the hostname of the node that runs it

    @property
    def endpoint(self) -> str:
        """address:port, with IPv6 addresses bracketed."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @classmethod
    def trusted_file_rows(cls, rows: Iterable[tuple[str, str | None, str, str, str, int, int, bool]]) -> list[Backend]:
        """Backends from an inventory file's (service, env, name, id, address, port, weight, backup) rows whose
        values all passed lbgen.grammar: the same Backends as the constructor gives, at a third of the cost
        (a frozen dataclass's __init__ sets each of its 13 fields through object.__setattr__, which was most
        of reading a 50,000-backend inventory)."""
        new, assign = object.__new__, object.__setattr__
        backends = []
        for service, env, name, id_, address, port, weight, backup in rows:
            backend = new(cls)
            assign(backend, "__dict__", {
                "service": service, "env": env, "name": name, "id": id_, "address": address, "port": port,
                "weight": weight, "backup": backup, "docker_health": None, "source": "file", "network": None,
                "swarm_service": None, "node": None})
            backends.append(backend)
        return backends

    def to_dict(self) -> dict[str, Any]:
        """Every field; `swarm_service` and `node` only for Swarm tasks."""
        data = asdict(self)
        if self.source != "swarm":
            del data["swarm_service"], data["node"]
        return data


@dataclass(frozen=True)
class Skipped:
    """A container that carries lbgen labels but is not routed, and why."""

    name: str
    reason: str
    kind: str = "container"  # or "task" (a Swarm task)

    def __str__(self) -> str:
        return f"skipped {self.kind} {self.name}: {self.reason}"


_SERVICE = attrgetter("service")


@dataclass(frozen=True)
class Inventory:
    """What a discovery source found: the routable backends and the containers it skipped."""

    backends: tuple[Backend, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def for_service(self, service: str) -> tuple[Backend, ...]:
        return self._by_service.get(service, ())

    @functools.cached_property
    def _by_service(self) -> dict[str, tuple[Backend, ...]]:
        """One pass over the backends, not one per service (an edge with 1,000 services asks 1,000 times); a
        C-level one when they come grouped by service (every source sorts them so)."""
        grouped: dict[str, tuple[Backend, ...]] = {}
        for service, run in itertools.groupby(self.backends, key=_SERVICE):
            if service in grouped:  # not grouped: one service in several runs
                lists: dict[str, list[Backend]] = {}
                for b in self.backends:
                    lists.setdefault(b.service, []).append(b)
                return {k: tuple(v) for k, v in lists.items()}
            grouped[service] = tuple(run)
        return grouped

    def envs(self, service: str) -> list[str]:
        """The envs present for a service (backends without an env are in every env's pool)."""
        return sorted({b.env for b in self.for_service(service) if b.env is not None})

    def __add__(self, other: Inventory) -> Inventory:
        return Inventory(self.backends + other.backends, self.skipped + other.skipped)


@dataclass(frozen=True)
class Pool:
    """One service as it is routed: the active env and the servers the proxy sends traffic to."""

    service: str
    active_env: str | None
    servers: tuple[Backend, ...] = field(default=())

    @property
    def primary(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if not s.backup)

    @property
    def backups(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if s.backup)


class Outcome(str, enum.Enum):
    """What became of a switch (as recorded in the history and returned to callers)."""

    SWITCHED = "switched"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry-run"
    REFUSED = "refused"
    ROLLED_BACK = "rolled-back"
    MAINTENANCE_ON = "maintenance-on"  # `lbgen maintenance on`: from/to are the active env, unchanged
    MAINTENANCE_OFF = "maintenance-off"
    CANARY = "canary"  # `switch --weight N`: N% of requests to the to-env, the active env unchanged
    CANARY_ENDED = "canary-ended"  # `switch --env ACTIVE` / `rollback` during a canary: all traffic back
    ANALYSIS_FAILED = "analysis-failed"  # the analysis found a breach: all traffic back on the from-env

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded switch attempt, newest first in the history."""

    time: str  # UTC, ISO 8601 to the second
    service: str
    from_env: str | None
    to_env: str
    outcome: Outcome
    duration: float
    forced: bool = False
    host: str = ""
    user: str = ""
    weight: int | None = None  # a canary step: the to-env's share of requests, in percent
    detail: str = ""  # what an analysis found (the figures), for analysis-failed

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"time": self.time, "service": self.service, "from": self.from_env, "to": self.to_env,
                "host": self.host, "user": self.user, "outcome": self.outcome.value,
                "duration": self.duration, "forced": self.forced}
        if self.weight is not None:
            data["weight"] = self.weight
        if self.detail:
            data["detail"] = self.detail
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEntry:
        """Raises ValueError/KeyError/TypeError on a malformed entry."""
        return cls(time=str(data["time"]), service=str(data["service"]), from_env=_opt_str(data.get("from")),
                   to_env=str(data["to"]), outcome=Outcome(data["outcome"]), duration=float(data.get("duration", 0)),
                   forced=bool(data.get("forced", False)), host=str(data.get("host", "")),
                   user=str(data.get("user", "")),
                   weight=None if data.get("weight") is None else int(data["weight"]),
                   detail=str(data.get("detail", "")))


@dataclass(frozen=True)
class Canary:
    """A canary in progress: `weight` percent of the service's requests go to `env`, the rest to the
    active env, which stays the active env until a switch without a weight promotes `env`."""

    env: str
    weight: int  # 1-99
    # `--sticky cookie`: a client keeps the env that served it (a cookie names it) while the weight does not go
    # down. `epoch` is part of the cookie's value: a new one (a new canary, a lower weight) voids every cookie
    # given before (lbgen.sticky).
    sticky: str | None = None
    epoch: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"env": self.env, "weight": self.weight}
        if self.sticky is not None:
            data.update(sticky=self.sticky, sticky_epoch=self.epoch)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Canary:
        weight = int(data["weight"])
        if not 1 <= weight <= 99:
            raise ValueError(f"canary weight {weight} is not 1-99")
        sticky = data.get("sticky")
        if sticky is not None and sticky not in STICKY_KINDS:
            raise ValueError(f"canary stickiness {sticky!r} is not one of {', '.join(STICKY_KINDS)}")
        epoch = str(data.get("sticky_epoch", ""))
        if sticky is not None and not EPOCH_RE.fullmatch(epoch):
            raise ValueError(f"canary sticky_epoch {epoch!r} is not 1-16 hex digits")
        return cls(env=str(data["env"]), weight=weight, sticky=sticky, epoch=epoch if sticky else "")


@dataclass(frozen=True)
class Figures:
    """One env's responses in an analysis window, as the proxy logged them."""

    env: str
    requests: int
    errors: int  # 5xx responses
    p95: float | None  # seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "requests": self.requests, "errors": self.errors,
                "error_rate": round(self.error_rate, 4), "p95": None if self.p95 is None else round(self.p95, 4)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        p95 = data.get("p95")
        return cls(str(data["env"]), int(data["requests"]), int(data["errors"]), None if p95 is None else float(p95))

    def describe(self) -> str:
        p95 = "" if self.p95 is None else f", p95 {self.p95 * 1000:.0f}ms"
        return f"{self.env}: {self.errors} of {self.requests} responses were 5xx ({percent(self.error_rate)}){p95}"


@dataclass(frozen=True)
class AnalysisRecord:
    """The last analysed window of a service (a canary step, or the window after a full switch): kept in
    the record so that `lbgen status` shows the figures."""

    time: str  # UTC, ISO 8601 to the second, when the window ended
    env: str  # the env analysed
    weight: int  # its share in percent (100: after a full switch)
    passed: bool
    message: str
    figures: tuple[Figures, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "env": self.env, "weight": self.weight, "passed": self.passed,
                "message": self.message, "figures": [f.to_dict() for f in self.figures]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisRecord:
        return cls(str(data["time"]), str(data["env"]), int(data["weight"]), bool(data["passed"]),
                   str(data.get("message", "")), tuple(Figures.from_dict(f) for f in data.get("figures", [])))


@dataclass(frozen=True)
class Maintenance:
    """A service in maintenance: the proxy answers 503 with `message` and Retry-After (HTTP) or closes new
    connections at once (TCP), without touching the backends, until it is turned off."""

    message: str
    retry_after: int  # seconds
    since: str  # UTC, ISO 8601 to the second

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "retry_after": self.retry_after, "since": self.since}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Maintenance:
        return cls(message=str(data["message"]), retry_after=int(data["retry_after"]), since=str(data.get("since", "")))


@dataclass(frozen=True)
class HealthCount:
    """One backend's consecutive check results, kept between health passes (hysteresis)."""

    name: str
    fails: int = 0
    passes: int = 0
    ejected: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fails": self.fails, "passes": self.passes, "ejected": self.ejected}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthCount:
        return cls(name=str(data.get("name", "")), fails=int(data.get("fails", 0)),
                   passes=int(data.get("passes", 0)), ejected=bool(data.get("ejected", False)))


def percent(fraction: float) -> str:
    """0.078 -> '7.8%', 0.01 -> '1%'."""
    value = fraction * 100
    return f"{value:.0f}%" if value == round(value) else f"{value:.1f}%"


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
