"""The narrow seam between lbgen and a container engine, in lbgen's own plain types.

`DockerEngine` (lbgen.docker_engine, the only importer of the docker SDK) implements it for real;
tests use the hand-written `FakeEngine` in tests/fakes.py. Later sources (Swarm, several hosts) add
engines, not special cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol, Sequence


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
    user: str = ""  # the user PID 1 runs as, as the container's config says (`haproxy`, `101:101`; "" = root)


@dataclass(frozen=True)
class FileSpec:
    """One file for Engine.put_files; its bytes never show in a repr."""

    name: str  # a plain file name, no directory
    data: bytes = field(repr=False)
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


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

    def put_files(self, container: str, directory: str, files: Sequence[FileSpec]) -> None:
        """Write files into `directory` of the container in one archive, each with its mode and owner,
        creating `directory` (mode 0755, root's) when it is missing; its parent must exist."""

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

    def events(self, label: str, since: float | None = None) -> Iterator[EngineEvent]:
        """Container events for containers carrying the label key; blocks. Ends when the engine goes away."""
