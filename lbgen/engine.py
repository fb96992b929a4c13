"""The narrow seam between lbgen and a container engine, in lbgen's own plain types.

`DockerEngine` (lbgen.docker_engine, the only importer of the docker SDK) implements it for real;
tests use the hand-written `FakeEngine` in tests/fakes.py. Later sources (Swarm, several hosts) add
engines, not special cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Iterator, Mapping, Protocol


@dataclass(frozen=True)
class ContainerInfo:
    """What lbgen needs to know of one container."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    running: bool = True
    health: str | None = None  # Docker HEALTHCHECK status: healthy, unhealthy, starting; None without one
    networks: Mapping[str, str] = field(default_factory=dict)  # network name -> IP address on it
    network_ids: Mapping[str, str] = field(default_factory=dict)  # network name -> network id
    exposed_ports: tuple[int, ...] = ()  # TCP ports from the image / --expose
    image: str = ""  # image id
    command: tuple[str, ...] = ()  # entrypoint + args of PID 1


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str  # stdout and stderr together


@dataclass(frozen=True)
class EngineEvent:
    """A container or network event, reduced to what watch mode needs."""

    action: str  # start, die, stop, kill, destroy, health_status, connect, disconnect, ...
    container_id: str
    container_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    time: float = 0.0
    signal: str | None = None  # for `kill`: the signal sent, as Docker reports it ("15", "1", ...)


class Engine(Protocol):
    def ping(self) -> None:
        """Raise DockerUnavailable when the engine does not answer."""

    def list_containers(self, label: str) -> list[ContainerInfo]:
        """All containers (running or not) that carry the label key `label`."""

    def get_container(self, ref: str) -> ContainerInfo:
        """A container by name or id; ContainerNotFound when there is none."""

    def exec(self, container: str, argv: list[str]) -> ExecResult:
        """Run argv (no shell unless argv asks for one) in a running container."""

    def put_file(self, container: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file into the container (its directory must exist)."""

    def read_file(self, container: str, path: str) -> bytes | None:
        """A file's bytes from the container, or None when it does not exist."""

    def signal(self, container: str, signal: str) -> None:
        """Send a signal (e.g. HUP, USR2) to the container's PID 1."""

    def stop_container(self, ref: str, timeout: float = 10.0) -> None:
        """Stop a container gracefully (SIGTERM, then SIGKILL after `timeout`)."""

    def create_marker(self, name: str, image: str, labels: Mapping[str, str]) -> str | None:
        """Create (not start) a container named `name`; its id, or None when the name is taken.

        Container names are unique per engine, which makes this an atomic test-and-set: lbgen's lock.
        """

    def remove_container(self, ref: str) -> bool:
        """Remove a container by id; False when it was already gone."""

    def ensure_image(self, ref: str, rootfs: bytes) -> None:
        """Make image `ref` from `rootfs` (a tar of its whole filesystem) unless it exists: no registry."""

    def events(self, label: str, since: float | None = None, names: Collection[str] = ()) -> Iterator[EngineEvent]:
        """Container events for containers carrying the label key, or named in `names` (the proxy); blocks.
        Ends when the engine goes away."""
