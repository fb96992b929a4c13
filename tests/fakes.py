"""Hand-written fakes of lbgen's seams, for fast unit tests. Integration tests use the real thing.

FakeEngine implements lbgen.engine.Engine in memory:

    engine = FakeEngine()
    engine.add_backend("web-blue-1", "web", "blue", network="lbnet")       # a labelled, running backend
    proxy = engine.add_proxy("proxy", "nginx", network="lbnet")           # PID 1: nginx -g 'daemon off;'
    engine.add("other", labels={...}, running=False, health="starting", networks={...}, exposed_ports=(80,))
    engine.files[proxy.id]["/etc/nginx/conf.d/lbgen.conf"] = b"..."       # or engine.write(...) / read(...)
    engine.exec_handlers["nginx"] = lambda eng, c, argv: ExecResult(0, "")  # what `nginx ...` does
    engine.signal_handlers["HUP"] = lambda eng, c, sig: ...               # e.g. "the proxy reloads"
    engine.fail_with = DockerUnavailable("cannot reach the Docker daemon at ...: Connection refused")
    engine.fail_on["put_file"] = PermissionError("read-only file system")
    ... code under test ...
    assert engine.signals == [("proxy", "HUP")]
    assert engine.execs == [("proxy", ["nginx", "-t", "-q"])]

Swarm (a manager) is off until a test adds a service or sets `engine.swarm = True`:

    svc = engine.add_service("web-blue", labels={"lbgen.service": "web", "lbgen.env": "blue", "lbgen.port": "8080"})
    engine.add_task(svc, slot=1, network="overlay", node="node-2")          # a running task on another node
    engine.add_task(svc, slot=2, network="overlay", desired_state="shutdown")  # being stopped by Swarm
    ... code under test ...
    assert engine.scaled == [("web-blue", 0)]

Containers are addressed like Docker does: by full id, by name, or by a unique id prefix. Errors are
the ones DockerEngine raises (ContainerNotFound for a missing or stopped container, None / False where the
protocol says so). Addresses the helpers make up are in 192.0.2.0/24 (TEST-NET-1), which nothing answers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from typing import Any, Collection, Callable, Iterable, Iterator, Mapping, Sequence

from lbgen.engine import ROOT, ContainerInfo, EngineEvent, ExecResult, FileSpec, Mount, ServiceInfo, TaskInfo
from lbgen.errors import ContainerNotFound

ExecHandler = Callable[["FakeEngine", ContainerInfo, "list[str]"], ExecResult]
SignalHandler = Callable[["FakeEngine", ContainerInfo, str], None]


PROXY_COMMANDS = {
    "nginx": ("nginx", "-g", "daemon off;"),
    "haproxy": ("haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"),
}


def fake_id(name: str) -> str:
    """A stable 64-hex container id for a name, so golden outputs do not change between runs."""
    return hashlib.sha256(name.encode()).hexdigest()


class FakeEngine:
    """An in-memory container engine. Every attribute is public and meant to be set or asserted on.

    containers       id -> ContainerInfo (replace an entry, or use update(), to change a container)
    files            container id -> {absolute path -> bytes}; directories always exist
    modes            (container id, path) -> the mode put_file was given
    exec_handlers    argv[0] (or its basename) -> handler(engine, container, argv) -> ExecResult; they
                     take precedence over the built-ins (true, false, cat, cp, mv, rm, mkdir), which act
                     on `files`. Anything else exits 127 like a missing binary would.
    signal_handlers  signal name (HUP, USR2, ...) -> handler(engine, container, signal), after recording
    events_queue     EngineEvents that events() yields (filtered by label and since), then it ends
    fail_with        an exception raised by every Engine method while set (e.g. DockerUnavailable)
    fail_on          method name -> exception raised by that method only
    calls            every Engine call as a tuple: ("exec", "proxy", ["nginx", "-t"]), ("ping",), ...
    execs            (container name, argv) of each exec
    exec_users       the user of each exec, in the same order as execs
    signals          (container name, signal) of each signal
    stopped          names of containers stop_container stopped
    removed          names of containers remove_container removed
    markers          names of containers create_marker created
    images           ref -> rootfs of the images ensure_image made
    swarm            whether this engine is a Swarm manager (add_service sets it)
    services         service id -> ServiceInfo;  tasks: every TaskInfo, history included
    scaled           (service name, replicas) of each scale_service
    """

    def __init__(self, containers: Iterable[ContainerInfo] = ()) -> None:
        self.containers: dict[str, ContainerInfo] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.modes: dict[tuple[str, str], int] = {}
        self.owners: dict[tuple[str, str], tuple[int, int]] = {}  # put_files owners (uid, gid)
        self.exec_handlers: dict[str, ExecHandler] = {}
        self.signal_handlers: dict[str, SignalHandler] = {}
        self.events_queue: list[EngineEvent] = []
        self.fail_with: BaseException | None = None
        self.fail_on: dict[str, BaseException] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.execs: list[tuple[str, list[str]]] = []
        self.exec_users: list[str] = []
        self.exec_inputs: list[bytes | None] = []  # each exec's stdin (handlers read the last one)
        self.exec_input = True  # Engine.exec_input: a file may come on an exec's stdin (as on a unix socket)
        self.signals: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        self.removed: list[str] = []
        self.markers: list[str] = []
        self.images: dict[str, bytes] = {}  # ensure_image: ref -> rootfs tar
        self.swarm = False
        self.services: dict[str, ServiceInfo] = {}
        self.tasks: list[TaskInfo] = []
        self.scaled: list[tuple[str, int]] = []
        self.log_lines: dict[str, list[tuple[float, str]]] = {}  # container name -> (epoch, line): logs()
        self._next_address = 10
        for info in containers:
            self._store(info)

    # --- setting up --------------------------------------------------------------------------------

    def add(self, name: str, *, labels: Mapping[str, str] | None = None, running: bool = True,
            health: str | None = None, networks: Mapping[str, str] | None = None,
            network_ids: Mapping[str, str] | None = None, exposed_ports: tuple[int, ...] = (),
            image: str = "sha256:" + "0" * 64, command: tuple[str, ...] = (), id: str | None = None,
            mounts: tuple[Mount, ...] = (), read_only_rootfs: bool = False, user: str = "") -> ContainerInfo:
        """Add (or replace) a container. network_ids default to fake ids derived from the network names."""
        networks = dict(networks or {})
        if network_ids is None:
            network_ids = {net: fake_id("network:" + net) for net in networks}
        info = ContainerInfo(id=id or fake_id(name), name=name, labels=dict(labels or {}), running=running,
                             health=health, networks=networks, network_ids=dict(network_ids),
                             exposed_ports=tuple(exposed_ports), image=image, command=tuple(command),
                             mounts=tuple(mounts), read_only_rootfs=read_only_rootfs, user=user)
        return self._store(info)

    def add_backend(self, name: str, service: str, env: str | None = None, *, network: str = "lbnet",
                    address: str | None = None, port: int | str | None = 8080, weight: int | str | None = None,
                    backup: bool | str | None = None, prefix: str = "lbgen",
                    labels: Mapping[str, str] | None = None, **kwargs: Any) -> ContainerInfo:
        """A labelled backend attached to `network` (address made up in 192.0.2.0/24 unless given).

        `port`, `weight`, `backup` become labels when not None (booleans as "true"/"false"); `labels` adds
        or overrides labels; other keyword arguments go to add() (running, health, exposed_ports, ...).
        """
        all_labels = {f"{prefix}.service": service}
        if env is not None:
            all_labels[f"{prefix}.env"] = env
        for key, value in (("port", port), ("weight", weight), ("backup", backup)):
            if value is not None:
                all_labels[f"{prefix}.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
        all_labels.update(labels or {})
        networks = kwargs.pop("networks", None)
        if networks is None:
            networks = {network: address or self.next_address()}
        return self.add(name, labels=all_labels, networks=networks, **kwargs)

    def add_proxy(self, name: str = "proxy", kind: str = "nginx", *, network: str = "lbnet",
                  address: str | None = None, **kwargs: Any) -> ContainerInfo:
        """A running proxy container whose PID 1 is the nginx master or the HAProxy master (-W), as the
        test image runs them; keyword arguments go to add() (command=..., running=..., ...)."""
        kwargs.setdefault("command", PROXY_COMMANDS[kind])
        networks = kwargs.pop("networks", None)
        if networks is None:
            networks = {network: address or self.next_address()}
        return self.add(name, networks=networks, **kwargs)

    def add_service(self, name: str, *, labels: Mapping[str, str] | None = None,
                    container_labels: Mapping[str, str] | None = None, replicas: int | None = 1,
                    healthcheck: bool = False, updating: bool = False) -> ServiceInfo:
        """Add (or replace) a Swarm service; makes this engine a Swarm manager."""
        self.swarm = True
        info = ServiceInfo(id=fake_id("service:" + name)[:25], name=name, labels=dict(labels or {}),
                           container_labels=dict(container_labels or {}), replicas=replicas,
                           healthcheck=healthcheck, updating=updating)
        self.services[info.id] = info
        return info

    def add_task(self, service: ServiceInfo | str, slot: int | None = 1, *, network: str = "lbnet",
                 address: str | None = None, state: str = "running", desired_state: str = "running",
                 node: str = "node-1", container: bool | str = True, networks: Mapping[str, str] | None = None,
                 id: str | None = None) -> TaskInfo:
        """A task of `service` (a ServiceInfo or a service name) attached to `network`. With `container`,
        its container is in `containers` too (a task on this node), with the container labels; a string
        is the id of an existing container that runs the task (e.g. a proxy's)."""
        svc = service if isinstance(service, ServiceInfo) else self._service(service)
        task_id = id or fake_id(f"task:{svc.name}:{slot}:{len(self.tasks)}")[:25]
        networks = dict(networks) if networks is not None else {network: address or self.next_address()}
        container_id = container if isinstance(container, str) else ""
        if container is True:
            labels = {**svc.container_labels, "com.docker.swarm.task.id": task_id,
                      "com.docker.swarm.service.name": svc.name}
            container_id = self.add(f"{svc.name}.{slot}.{task_id}", labels=labels, networks=networks,
                                    running=state == "running").id
        task = TaskInfo(id=task_id, service_id=svc.id, slot=slot, node_id=fake_id("node:" + node)[:25],
                        node=node, state=state, desired_state=desired_state, container_id=container_id,
                        networks=networks, network_ids={n: fake_id("network:" + n) for n in networks})
        self.tasks.append(task)
        return task

    def next_address(self) -> str:
        self._next_address += 1
        return f"192.0.2.{self._next_address}"

    def update(self, ref: str, **changes: Any) -> ContainerInfo:
        """Change fields of a container (e.g. update("web-1", health="healthy", running=False))."""
        info = dataclasses.replace(self._find(ref), **changes)
        self.containers[info.id] = info
        return info

    def write(self, ref: str, path: str, data: bytes | str) -> None:
        """Put a file in place without recording a call (test setup)."""
        self.files.setdefault(self._find(ref).id, {})[path] = data.encode() if isinstance(data, str) else data

    def read(self, ref: str, path: str) -> bytes | None:
        """A file's bytes without recording a call (test assertions)."""
        return self.files.get(self._find(ref).id, {}).get(path)

    def emit(self, action: str, ref: str, time: float = 0.0) -> EngineEvent:
        """Queue an event for a container, with its current name and labels."""
        info = self._find(ref)
        event = EngineEvent(action=action, container_id=info.id, container_name=info.name,
                            labels=dict(info.labels), time=time)
        self.events_queue.append(event)
        return event

    # --- the Engine protocol ------------------------------------------------------------------------

    def ping(self) -> None:
        self._call("ping")

    def version(self) -> str:
        self._call("version")
        return "0.0-fake"

    def list_containers(self, label: str) -> list[ContainerInfo]:
        self._call("list_containers", label)
        return [c for c in self.containers.values() if label in c.labels]

    def get_container(self, ref: str) -> ContainerInfo:
        self._call("get_container", ref)
        return self._find(ref)

    def exec(self, container: str, argv: list[str], user: str = ROOT, stdin: bytes | None = None) -> ExecResult:
        self._call("exec", container, list(argv))
        if not argv:
            raise ValueError("exec needs a non-empty argv")
        info = self._running(container)
        self.execs.append((info.name, list(argv)))
        self.exec_users.append(user)
        self.exec_inputs.append(stdin)
        handler = self.exec_handlers.get(argv[0]) or self.exec_handlers.get(posixpath.basename(argv[0]))
        if handler is not None:
            return handler(self, info, list(argv))
        builtin = getattr(self, "_exec_" + posixpath.basename(argv[0]), None)
        if builtin is not None:
            return builtin(info, argv[1:])
        return ExecResult(127, f"exec: \"{argv[0]}\": executable file not found in $PATH")

    def put_file(self, container: str, path: str, data: bytes, mode: int = 0o644,
                 also: Mapping[str, bytes] | None = None) -> None:
        self._call("put_file", container, path, data, mode, *([dict(also)] if also else []))
        files = {path: data, **(also or {})}
        if any(not p.startswith("/") or p.endswith("/") for p in files):
            raise ValueError(f"put_file needs absolute file paths, got {sorted(files)!r}")
        info = self._find(container)
        for name, body in files.items():
            self.files.setdefault(info.id, {})[name] = bytes(body)
            self.modes[(info.id, name)] = mode

    def put_files(self, container: str, directory: str, files: Sequence[FileSpec]) -> None:
        self._call("put_files", container, directory, [f.name for f in files])
        if not directory.startswith("/") or directory.endswith("/"):
            raise ValueError(f"put_files needs an absolute directory, got {directory!r}")
        info = self._find(container)
        for spec in files:
            path = f"{directory}/{spec.name}"
            self.files.setdefault(info.id, {})[path] = bytes(spec.data)
            self.modes[(info.id, path)] = spec.mode
            self.owners[(info.id, path)] = (spec.uid, spec.gid)

    def read_file(self, container: str, path: str) -> bytes | None:
        self._call("read_file", container, path)
        return self.files.get(self._find(container).id, {}).get(path)

    def read_files(self, container: str, directory: str) -> dict[str, bytes]:
        self._call("read_files", container, directory)
        prefix = directory.rstrip("/") + "/"
        return {path[len(prefix):]: data for path, data in self.files.get(self._find(container).id, {}).items()
                if path.startswith(prefix) and "/" not in path[len(prefix):]}

    def logs(self, container: str, since: float, until: float) -> str:
        """The lines of `log_lines[name]` ((epoch seconds, text) pairs) in [since, until), timestamped."""
        self._call("logs", container, since, until)
        import datetime

        out = []
        for t, text in self.log_lines.get(self._find(container).name, []):
            if since <= t < until:
                stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
                out.append(f"{stamp}000Z {text}\n")
        return "".join(out)

    def signal(self, container: str, signal: str) -> None:
        self._call("signal", container, signal)
        info = self._running(container)
        self.signals.append((info.name, signal))
        handler = self.signal_handlers.get(signal)
        if handler is not None:
            handler(self, info, signal)

    def stop_container(self, ref: str, timeout: float = 10.0) -> None:
        self._call("stop_container", ref, timeout)
        info = self._find(ref)
        self.containers[info.id] = dataclasses.replace(info, running=False, networks={}, network_ids={})
        self.stopped.append(info.name)

    def create_marker(self, name: str, image: str, labels: Mapping[str, str]) -> str | None:
        self._call("create_marker", name, image, dict(labels))
        if any(c.name == name for c in self.containers.values()):
            return None
        info = self.add(name, labels=labels, running=False, image=image, command=("true",),
                        id=fake_id(f"marker:{name}:{len(self.markers)}"))
        self.markers.append(name)
        return info.id

    def remove_container(self, ref: str) -> bool:
        self._call("remove_container", ref)
        try:
            info = self._find(ref)
        except ContainerNotFound:
            return False
        del self.containers[info.id]
        self.files.pop(info.id, None)
        self.removed.append(info.name)
        return True

    def ensure_image(self, ref: str, rootfs: bytes) -> None:
        self._call("ensure_image", ref)
        self.images.setdefault(ref, rootfs)

    def events(self, label: str, since: float | None = None, names: Collection[str] = ()) -> Iterator[EngineEvent]:
        self._call("events", label, since)
        while self.events_queue:
            event = self.events_queue.pop(0)
            if (label in event.labels or event.container_name in names) and (since is None or event.time >= since):
                yield event

    def swarm_manager(self) -> bool:
        self._call("swarm_manager")
        return self.swarm

    def list_services(self, label: str) -> list[ServiceInfo]:
        self._call("list_services", label)
        return [s for s in self.services.values() if label in s.labels or label in s.container_labels]

    def get_service(self, ref: str) -> ServiceInfo | None:
        self._call("get_service", ref)
        try:
            return self._service(ref)
        except ContainerNotFound:
            return None

    def list_tasks(self, service_ids: list[str]) -> list[TaskInfo]:
        self._call("list_tasks", list(service_ids))
        return [t for t in self.tasks if t.service_id in service_ids]

    def scale_service(self, ref: str, replicas: int) -> None:
        self._call("scale_service", ref, replicas)
        svc = self._service(ref)
        self.services[svc.id] = dataclasses.replace(svc, replicas=replicas)
        self.scaled.append((svc.name, replicas))

    # --- internals ---------------------------------------------------------------------------------

    def _service(self, ref: str) -> ServiceInfo:
        for svc in self.services.values():
            if ref in (svc.id, svc.name):
                return svc
        raise ContainerNotFound(f"service {ref} does not exist")

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        if self.fail_with is not None:
            raise self.fail_with
        if method in self.fail_on:
            raise self.fail_on[method]

    def _store(self, info: ContainerInfo) -> ContainerInfo:
        for other in list(self.containers.values()):
            if other.name == info.name and other.id != info.id:
                del self.containers[other.id]
        self.containers[info.id] = info
        self.files.setdefault(info.id, {})
        return info

    def _find(self, ref: str) -> ContainerInfo:
        if ref in self.containers:
            return self.containers[ref]
        for info in self.containers.values():
            if info.name == ref:
                return info
        matches = [info for cid, info in self.containers.items() if ref and cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise ContainerNotFound(f"container {ref} does not exist")

    def _running(self, ref: str) -> ContainerInfo:
        info = self._find(ref)
        if not info.running:
            raise ContainerNotFound(f"container {ref} is not running")
        return info

    # Built-in commands, enough for code that moves files around with exec (state.json, config swaps).

    def _exec_true(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        return ExecResult(0, "")

    def _exec_false(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        return ExecResult(1, "")

    def _exec_mkdir(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        return ExecResult(0, "")  # directories always exist in the fake

    def _exec_cat(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        files = self.files.setdefault(info.id, {})
        out = []
        for path in _operands(args):
            if path not in files:
                return ExecResult(1, "".join(out) + f"cat: {path}: No such file or directory\n")
            out.append(files[path].decode("utf-8", errors="replace"))
        return ExecResult(0, "".join(out))

    def _exec_rm(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        files = self.files.setdefault(info.id, {})
        force = any(a.startswith("-") and "f" in a for a in args)
        for path in _operands(args):
            if path in files:
                del files[path]
            elif not force:
                return ExecResult(1, f"rm: cannot remove '{path}': No such file or directory\n")
        return ExecResult(0, "")

    def _exec_mv(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        return self._copy(info, args, "mv", move=True)

    def _exec_cp(self, info: ContainerInfo, args: list[str]) -> ExecResult:
        return self._copy(info, args, "cp", move=False)

    def _copy(self, info: ContainerInfo, args: list[str], tool: str, move: bool) -> ExecResult:
        files = self.files.setdefault(info.id, {})
        paths = _operands(args)
        if len(paths) != 2:
            return ExecResult(1, f"{tool}: the fake supports exactly SRC DST, got {paths}\n")
        src, dst = paths
        if src not in files:
            return ExecResult(1, f"{tool}: cannot stat '{src}': No such file or directory\n")
        files[dst] = files[src]
        if (info.id, src) in self.modes:
            self.modes[(info.id, dst)] = self.modes[(info.id, src)]
        if move:
            del files[src]
            self.modes.pop((info.id, src), None)
        return ExecResult(0, "")


def _operands(args: list[str]) -> list[str]:
    return [a for a in args if not a.startswith("-")]
