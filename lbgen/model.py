"""lbgen's plain data model: backends as discovered, and what is routed. No I/O here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    source: str = "docker"

    @property
    def endpoint(self) -> str:
        """address:port, with IPv6 addresses bracketed."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Skipped:
    """A container that carries lbgen labels but is not routed, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"skipped container {self.name}: {self.reason}"


@dataclass(frozen=True)
class Inventory:
    """What a discovery source found: the routable backends and the containers it skipped."""

    backends: tuple[Backend, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def for_service(self, service: str) -> tuple[Backend, ...]:
        return tuple(b for b in self.backends if b.service == service)

    def envs(self, service: str) -> list[str]:
        """The envs present for a service (backends without an env are in every env's pool)."""
        return sorted({b.env for b in self.backends if b.service == service and b.env is not None})

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
