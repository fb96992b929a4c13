"""The narrow seam between lbgen and a container engine, in lbgen's own plain types.

`DockerEngine` (lbgen.docker_engine, the only importer of the docker SDK) implements it for real;
tests use the hand-written `FakeEngine` in tests/fakes.py. Containers and, on a Swarm manager, services
and tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Iterable, Iterator, Mapping, Protocol, Sequence


# The user lbgen's own in-container steps (install, validate, restore, state) run as: root, whatever user the
# image runs as, so that the official haproxy image (user haproxy, root-owned config directory) needs no
# change. What lbgen writes stays readable by the proxy's own user (files are created 0644, root-owned).
ROOT = "0"


# Docker puts this label on every container it runs for a Swarm task.
SWARM_TASK_LABEL = "com.docker.swarm.task.id"


@dataclass(frozen=True)
class Mount:
    """One mount of a container, as `docker inspect` lists it."""

    type: str  # bind, volume, tmpfs, ...
    destination: str  # the path inside the container
    source: str = ""  # the host path (bind) or the volume's directory on the host
    name: str = ""  # the volume's name (volume)
    rw: bool = True

    def describe(self) -> str:
        """How a user recognises the mount: `bind mount /srv/haproxy.cfg -> /usr/local/etc/haproxy/haproxy.cfg`."""
        origin = self.name or self.source or "?"
        kind = {"bind": "bind mount", "volume": "volume"}.get(self.type, f"{self.type} mount")
        return f"{kind} {origin} -> {self.destination}"

    def covers(self, path: str) -> bool:
        return path == self.destination or path.startswith(self.destination.rstrip("/") + "/")


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
    mounts: tuple[Mount, ...] = ()  # from inspect only (a container list reports none)
    read_only_rootfs: bool = False  # `docker run --read-only`
    user: str = ""  # the user the container runs as (Config.User; "" is the image's default, root)

    def mount_of(self, path: str) -> Mount | None:
        """The mount that holds `path` (the deepest one), or None when it is on the container's own filesystem."""
        covering = [m for m in self.mounts if m.covers(path)]
        return max(covering, key=lambda m: len(m.destination)) if covering else None


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


@dataclass(frozen=True)
class ServiceInfo:
    """What lbgen needs to know of one Swarm service."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)  # `--label`
    container_labels: Mapping[str, str] = field(default_factory=dict)  # `--container-label`
    replicas: int | None = None  # None for a global service
    healthcheck: bool = False  # its containers have a HEALTHCHECK (from the spec or, unknown here, the image)
    updating: bool = False  # a rolling update (or its rollback) is in progress


@dataclass(frozen=True)
class TaskInfo:
    """One Swarm task of a service, as the manager reports it."""

    id: str
    service_id: str
    slot: int | None  # None for a global service's task
    node_id: str
    node: str  # the node's hostname ("" when the manager does not know the node)
    state: str  # Swarm's task state: pending, starting, running, shutdown, failed, ...
    desired_state: str  # running, shutdown, ...
    container_id: str = ""  # "" before the node created the container
    networks: Mapping[str, str] = field(default_factory=dict)  # network name -> IP address on it
    network_ids: Mapping[str, str] = field(default_factory=dict)  # network name -> network id


def network_named(ref: str, networks: Iterable[str], network_ids: Mapping[str, str]) -> str | None:
    """The name under which a container or task knows network `ref` (a name, an id, or an id prefix of 12
    or more characters), or None when it is not attached to it."""
    names = set(networks) | set(network_ids)
    if ref in names:
        return ref
    for name, network_id in network_ids.items():
        if network_id == ref or (len(ref) >= 12 and network_id.startswith(ref)):
            return name
    return None


class Engine(Protocol):
    #: Whether a file is best delivered on an exec's standard input (in the same round trip as the command
    #: that uses it) rather than by an archive write first: true where a hijacked connection costs nothing
    #: extra (a unix socket, TCP), false over ssh (the connection ends with the exec; the next call dials again).
    exec_input: bool

    def ping(self) -> None:
        """Raise DockerUnavailable when the engine does not answer."""

    def version(self) -> str:
        """The engine's version ("20.10.24"); DockerUnavailable when it does not answer."""

    def list_containers(self, label: str) -> list[ContainerInfo]:
        """All containers (running or not) that carry the label key `label`."""

    def get_container(self, ref: str) -> ContainerInfo:
        """A container by name or id; ContainerNotFound when there is none."""

    def exec(self, container: str, argv: list[str], user: str = ROOT, stdin: bytes | None = None) -> ExecResult:
        """Run argv (no shell unless argv asks for one) in a running container, as `user` (root unless
        told: lbgen's own steps must not depend on the user the image runs as); `stdin`: bytes the command
        reads on its standard input, which is then closed (a file delivered in the same round trip). The
        command should read all of it: Docker keeps the stream of one that exits leaving a large input
        unread open for seconds (lbgen's install script drains what it does not use)."""

    def put_file(self, container: str, path: str, data: bytes, mode: int = 0o644,
                 also: Mapping[str, bytes] | None = None) -> None:
        """Write a file into the container (its directory must exist); `also`: more files (absolute path
        -> bytes, same mode, directories existing) in the same archive, one round trip for all."""

    def put_files(self, container: str, directory: str, files: Sequence[FileSpec]) -> None:
        """Write files into `directory` of the container in one archive, each with its mode and owner,
        creating `directory` (mode 0755, root's) when it is missing; its parent must exist."""

    def read_file(self, container: str, path: str) -> bytes | None:
        """A file's bytes from the container, or None when it does not exist."""

    def read_files(self, container: str, directory: str) -> dict[str, bytes]:
        """The regular files directly in `directory` of the container (name -> bytes), in one round trip;
        empty when the directory does not exist."""

    def signal(self, container: str, signal: str) -> None:
        """Send a signal (e.g. HUP, USR2) to the container's PID 1."""

    def logs(self, container: str, since: float, until: float) -> str:
        """What the container wrote to stdout and stderr between two wall-clock times (seconds since the
        epoch), each line prefixed with the engine's RFC 3339 timestamp and a space."""

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

    # --- Swarm (a manager node); an engine outside a Swarm answers False / [] ----------------------

    def swarm_manager(self) -> bool:
        """True when this engine is a manager of an active Swarm (it can list services and tasks)."""

    def list_services(self, label: str) -> list[ServiceInfo]:
        """The Swarm services carrying the label key `label` as a service or a container label."""

    def get_service(self, ref: str) -> ServiceInfo | None:
        """A Swarm service by name or id, or None (also outside a Swarm)."""

    def list_tasks(self, service_ids: list[str]) -> list[TaskInfo]:
        """Every task the manager knows of these services (history included), on every node."""

    def scale_service(self, ref: str, replicas: int) -> None:
        """Set a replicated service's replica count."""
