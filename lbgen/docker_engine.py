"""The Engine on a real Docker daemon, through the docker SDK. The only module of lbgen that imports `docker`.

Docker's objects and exceptions stop here: callers get ContainerInfo / ExecResult / EngineEvent, and
DockerUnavailable or ContainerNotFound (with the SDK's exception as the cause).
"""
from __future__ import annotations

import io
import math
import os
import posixpath
import re
import socket
import tarfile
import time
from contextlib import contextmanager
from typing import Any, Collection, Iterator, Mapping, Sequence

from lbgen.docker_convert import (EVENT_ACTIONS, SERVICE_ACTIONS, event_from_message, event_time, info_from_inspect,
                                   info_from_summary, service_from_inspect, task_from_inspect)
from lbgen.engine import ROOT, ContainerInfo, EngineEvent, ExecResult, FileSpec, ServiceInfo, TaskInfo
from lbgen.ssh_transport import classify_ssh_error, host_port
from lbgen.errors import ContainerNotFound, DockerUnavailable

DEFAULT_TIMEOUT = 15.0  # seconds per API call: long enough for `nginx -t`, short enough to notice a dead daemon


# How the daemon words its 503 to `GET /swarm` on an engine in no Swarm or on a worker (daemon/cluster's
# errNoManager, both cases, and errNoSwarm). A leaderless manager or a locked Swarm is a 503 too, worded
# otherwise: only the wording tells them apart.
NO_SWARM_MANAGER = ("This node is not a swarm manager", "This node is not part of a swarm")

# What the daemon answers about a container in the middle of its removal (`docker rm -f` while lbgen
# reads or writes a file in it): that container is going away, as good as gone.
BEING_REMOVED = ("unexpectedly nil", "removal in progress", "marked for removal", "is being removed")


class DockerEngine:
    """lbgen.engine.Engine for one Docker daemon (DOCKER_HOST, or `base_url`)."""

    def __init__(self, client: Any = None, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        import docker  # lazily: `lbgen --help` and `render --from-file` never pay for the SDK
        import requests
        import urllib3

        self._errors = docker.errors
        # requests' errors, and urllib3's, which an events stream raises when the daemon drops it
        self._transport_errors = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError)
        self.where = base_url or _client_url(client) or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if client is None:
            with self._calls("connect"):
                if self.where.startswith("ssh://"):
                    client = _ssh_client(self.where, timeout)
                else:
                    # The version is negotiated right after (_negotiate), without the SDK's /version call.
                    placeholder = docker.constants.MINIMUM_DOCKER_API_VERSION
                    client = (docker.DockerClient(base_url=base_url, version=placeholder, timeout=timeout) if base_url
                              else docker.from_env(version=placeholder, timeout=timeout))
                    _negotiate(client.api, timeout)
        self.client = client
        # The low-level API: one HTTP call per operation, where the high-level objects inspect first.
        self.api = client.api
        self.exec_input = not self.where.startswith("ssh://")

    # --- the Engine protocol ------------------------------------------------------------------------

    def ping(self) -> None:
        with self._calls("ping"):
            self.api.ping()

    def version(self) -> str:
        with self._calls("ask the version"):
            return str((self.api.version() or {}).get("Version") or "?")

    def list_containers(self, label: str) -> list[ContainerInfo]:
        """One list call. For running containers every field is what get_container gives (command: see
        info_from_summary); Docker reports no health or exposed ports for stopped ones."""
        with self._calls("list containers"):
            summaries = self.api.containers(all=True, filters={"label": label})
        return [info_from_summary(s) for s in summaries]

    def get_container(self, ref: str) -> ContainerInfo:
        with self._calls("inspect a container", ref):
            return info_from_inspect(self.api.inspect_container(ref))

    def exec(self, container: str, argv: list[str], user: str = ROOT, stdin: bytes | None = None) -> ExecResult:
        if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"exec needs a non-empty list of strings, got {argv!r}")
        with self._calls(f"run {argv[0]} in container {container}", container):
            exec_id = self.api.exec_create(container, list(argv), stdout=True, stderr=True, user=user,
                                           stdin=stdin is not None)["Id"]
            if stdin is None:
                output = self.api.exec_start(exec_id)  # stdout and stderr, demultiplexed in arrival order
            else:
                output = self._exec_with_input(exec_id, stdin)
            exit_code = self._exit_code(exec_id)
        return ExecResult(exit_code, (output or b"").decode("utf-8", errors="replace"))

    def _exec_with_input(self, exec_id: str, data: bytes) -> bytes:
        """Start the exec on a hijacked connection: write `data`, close our side for writing (the command
        sees the end of its input), then read the multiplexed stdout/stderr frames until the daemon
        closes the stream. The socket keeps the client's timeout."""
        sock = self.api.exec_start(exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)  # the SDK gives a SocketIO over a unix socket (and over lbgen's ssh)
        received = bytearray()
        try:
            try:
                raw.sendall(data)
                raw.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command ended before reading all of it: its output and exit code say why
            try:
                while chunk := raw.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass  # the daemon dropped a stream we had not finished writing, after the command ended
        except OSError as e:  # a timeout, or the daemon gone: a transport failure, said as one
            raise ConnectionError(f"exec stream: {e}") from e
        finally:
            sock.close()
            raw.close()  # a hijacked connection is never reused
        output, at = bytearray(), 0
        while at + 8 <= len(received):  # frames: stream (1 byte), 3 zero bytes, size (4 bytes, big-endian)
            size = int.from_bytes(received[at + 4:at + 8], "big")
            output += received[at + 8:at + 8 + size]
            at += 8 + size
        return bytes(output)

    def _exit_code(self, exec_id: str) -> int:
        # The output stream can close a moment before the daemon records the exit code.
        for _ in range(100):
            state = self.api.exec_inspect(exec_id)
            if state.get("ExitCode") is not None and not state.get("Running"):
                return int(state["ExitCode"])
            time.sleep(0.01)
        raise DockerUnavailable(f"the Docker daemon at {self.where} never reported the exit code of exec {exec_id}")

    def put_file(self, container: str, path: str, data: bytes, mode: int = 0o644,
                 also: Mapping[str, bytes] | None = None) -> None:
        files = {path: data, **(also or {})}
        if any(not p.startswith("/") or p.endswith("/") for p in files):
            raise ValueError(f"put_file needs absolute file paths, got {sorted(files)!r}")
        # One archive, extracted where the files' directories meet (members carry no directory entries,
        # so nothing about the directories changes).
        directory = posixpath.commonpath([p.rpartition("/")[0] or "/" for p in files])
        with self._calls(f"write {path} in container {container}", container):
            try:
                self.api.put_archive(container, directory, _tar_many(
                    {posixpath.relpath(p, directory): body for p, body in files.items()}, mode))
            except self._errors.NotFound as e:
                if _no_such_container(e):
                    raise
                raise FileNotFoundError(f"directory {directory} does not exist in container {container}") from e
            except self._errors.APIError as e:
                if e.status_code == 403 or "read-only" in _explain(e):  # 20.10 says 500, the docs 403
                    raise PermissionError(f"{directory} in container {container} is read-only "
                                          f"({_explain(e)})") from e
                raise

    def put_files(self, container: str, directory: str, files: Sequence[FileSpec]) -> None:
        parent, _, base = directory.rstrip("/").rpartition("/")
        if not directory.startswith("/") or not base:
            raise ValueError(f"put_files needs an absolute directory, got {directory!r}")
        parent = parent or "/"
        with self._calls(f"write files into {directory} in container {container}", container):
            try:
                self.api.put_archive(container, parent, _tar_files(base, files))
            except self._errors.NotFound as e:
                if _no_such_container(e):
                    raise
                raise FileNotFoundError(f"directory {parent} does not exist in container {container}") from e
            except self._errors.APIError as e:
                if e.status_code == 403 or "read-only" in _explain(e):
                    raise PermissionError(f"{parent} in container {container} is read-only "
                                          f"({_explain(e)})") from e
                raise

    def read_file(self, container: str, path: str) -> bytes | None:
        with self._calls(f"read {path} in container {container}", container):
            for _ in range(8):  # follow at most a few symlinks; Docker archives the link, not its target
                try:
                    stream, stat = self.api.get_archive(container, path)
                except self._errors.NotFound as e:
                    if _no_such_container(e):
                        raise
                    return None
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    member = tar.next()
                    if member is None:
                        return None
                    if member.issym() or member.islnk():
                        path = (stat or {}).get("linkTarget") or member.linkname
                        continue
                    if member.isdir():
                        raise IsADirectoryError(f"{path} in container {container} is a directory")
                    extracted = tar.extractfile(member)
                    return extracted.read() if extracted else None
        raise OSError(f"{path} in container {container}: too many levels of symbolic links")

    def read_files(self, container: str, directory: str) -> dict[str, bytes]:
        with self._calls(f"read {directory} in container {container}", container):
            try:
                stream, _ = self.api.get_archive(container, directory)
            except self._errors.NotFound as e:
                if _no_such_container(e):
                    raise
                return {}
            files: dict[str, bytes] = {}
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                for member in tar:  # `<directory's name>/<file>`; deeper entries and links are left out
                    parts = member.name.split("/")
                    extracted = tar.extractfile(member) if len(parts) == 2 and member.isreg() else None
                    if extracted is not None:
                        files[parts[1]] = extracted.read()
            return files

    def logs(self, container: str, since: float, until: float) -> str:
        with self._calls(f"read the logs of container {container}", container):
            data = self.api.logs(container, stdout=True, stderr=True, timestamps=True, since=since, until=until)
        return bytes(data or b"").decode("utf-8", errors="replace")

    def signal(self, container: str, signal: str) -> None:
        with self._calls(f"send SIG{signal} to container {container}", container):
            self.api.kill(container, signal=signal)

    def stop_container(self, ref: str, timeout: float = 10.0) -> None:
        with self._calls(f"stop container {ref}", ref):
            self.api.stop(ref, timeout=max(0, math.ceil(timeout)))

    def create_marker(self, name: str, image: str, labels: Mapping[str, str]) -> str | None:
        with self._calls(f"create container {name}"):
            try:
                created = self.api.create_container(image, command=["true"], entrypoint=["true"], name=name,
                                                    labels=dict(labels), network_disabled=True)
            except self._errors.APIError as e:
                if e.status_code == 409:  # the name is taken: someone else holds it
                    return None
                raise
        return str(created["Id"])

    def remove_container(self, ref: str) -> bool:
        with self._calls(f"remove container {ref}"):
            try:
                self.api.remove_container(ref, force=True)
            except self._errors.NotFound:
                return False
            except self._errors.APIError as e:
                if e.status_code == 409 and "already in progress" in _explain(e):
                    return False  # someone else is removing it
                raise
        return True

    def ensure_image(self, ref: str, rootfs: bytes) -> None:
        repository, _, tag = ref.rpartition(":")
        with self._calls(f"make image {ref}"):
            try:
                self.api.inspect_image(ref)
                return
            except self._errors.ImageNotFound:
                pass
            self.api.import_image_from_data(rootfs, repository=repository, tag=tag)

    def events(self, label: str, since: float | None = None, names: Collection[str] = ()) -> Iterator[EngineEvent]:
        """Container events of containers carrying `label`, plus network connect/disconnect of them.

        Ends when the daemon closes the stream; a broken connection raises DockerUnavailable.
        """
        filters = {"type": ["container", "network", "service"], "event": list(EVENT_ACTIONS + SERVICE_ACTIONS)}
        with self._calls("follow events"):
            stream = self.api.events(since=None if since is None else f"{since:.6f}", filters=filters, decode=True)
        try:
            while True:
                with self._calls("follow events"):
                    message = next(stream, None)
                if message is None:
                    return
                event = event_from_message(message, label, names)
                if event is None and message.get("Type") == "network":
                    event = self._network_event(message, label)
                if event is not None:
                    yield event
        finally:
            stream.close()

    def _network_event(self, message: Mapping[str, Any], label: str) -> EngineEvent | None:
        """A network event names the container only by id: look at it to know whether it is ours."""
        container_id = ((message.get("Actor") or {}).get("Attributes") or {}).get("container", "")
        if message.get("Action") not in ("connect", "disconnect") or not container_id:
            return None
        try:
            info = self.get_container(container_id)
        except ContainerNotFound:
            return None  # gone already; its destroy event says so
        if label not in info.labels:
            return None
        return EngineEvent(action=message["Action"], container_id=info.id, container_name=info.name,
                           labels=dict(info.labels), time=event_time(message))

    # --- Swarm ----------------------------------------------------------------------------------------

    def swarm_manager(self) -> bool:
        """Whether the engine is an active Swarm manager. `GET /swarm` says so, or that the engine is in no
        Swarm or is a worker, in about a millisecond; any other answer (a locked Swarm, a manager without a
        leader) is settled by /info, which costs 10-20 ms on Docker 20.10 (it asks runc and docker-init for
        their versions)."""
        try:
            self.api.inspect_swarm()
            return True
        except self._errors.APIError as e:
            if e.status_code == 503 and any(words in _explain(e) for words in NO_SWARM_MANAGER):
                return False
        except (self._errors.DockerException, *self._transport_errors):
            pass  # asked again below, where the failure becomes DockerUnavailable
        with self._calls("read the engine's Swarm state"):
            swarm = self.api.info().get("Swarm") or {}
        return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))

    def list_services(self, label: str) -> list[ServiceInfo]:
        # A container label cannot be filtered on by the engine: list all services, keep ours here.
        with self._calls("list Swarm services"):
            services = [service_from_inspect(s) for s in self.api.services()]
        return [s for s in services if label in s.labels or label in s.container_labels]

    def get_service(self, ref: str) -> ServiceInfo | None:
        with self._calls(f"inspect Swarm service {ref}"):
            try:
                return service_from_inspect(self.api.inspect_service(ref))
            except self._errors.NotFound:
                return None
            except self._errors.APIError as e:
                if e.status_code == 503:  # "This node is not a swarm manager"
                    return None
                raise

    def list_tasks(self, service_ids: list[str]) -> list[TaskInfo]:
        if not service_ids:
            return []
        with self._calls("list Swarm tasks"):
            tasks = self.api.tasks(filters={"service": list(service_ids)})
            nodes = {n["ID"]: str((n.get("Description") or {}).get("Hostname") or "") for n in self.api.nodes()}
        return [task_from_inspect(t, nodes) for t in tasks]

    def scale_service(self, ref: str, replicas: int) -> None:
        with self._calls(f"scale Swarm service {ref}"):
            self.client.services.get(ref).scale(replicas)

    # --- the boundary -------------------------------------------------------------------------------

    @contextmanager
    def _calls(self, what: str, container: str | None = None) -> Iterator[None]:
        """Turn the SDK's exceptions into lbgen's, keeping them as the cause."""
        errors = self._errors
        try:
            yield
        except errors.NotFound as e:
            if container is not None and _no_such_container(e):
                raise ContainerNotFound(f"container {container} does not exist") from e
            raise DockerUnavailable(f"cannot {what}: {_explain(e)}") from e
        except errors.APIError as e:
            explanation = _explain(e)
            if container is not None and e.status_code == 409 and ("is not running" in explanation
                                                                   or "is paused" in explanation):
                state = "is paused" if "is paused" in explanation else "is not running"
                raise ContainerNotFound(f"container {container} {state}") from e
            if container is not None and any(words in explanation for words in BEING_REMOVED):
                raise ContainerNotFound(f"container {container} is being removed") from e
            raise DockerUnavailable(f"the Docker daemon at {self.where} could not {what}: {explanation}") from e
        except (errors.DockerException, *self._transport_errors) as e:
            failed = _ssh_failure(e)
            reason = classify_ssh_error(failed.code, failed.stderr, *host_port(self.where)) if failed else None
            raise DockerUnavailable(f"cannot reach the Docker daemon at {self.where}: {reason or _reason(e)}") from e


def _ssh_client(where: str, timeout: float) -> Any:
    """A docker client whose every request goes through lbgen.ssh_transport (the system ssh, batch mode,
    connections reused). The SDK's own ssh:// transport starts one ssh per API call, needs paramiko even
    with the system client, and lets ssh write to stderr; so the client is made for a placeholder unix
    socket (nothing is dialled) and its adapter swapped before the API version is asked for."""
    import docker

    from lbgen.ssh_transport import SshAdapter

    client = docker.DockerClient(base_url="unix:///lbgen-ssh-placeholder", version="1.24", timeout=timeout)
    api = client.api
    api.close()
    api._custom_adapter = SshAdapter(where, timeout)
    api.mount("http+docker://", api._custom_adapter)  # the SDK's unix URLs: http+docker://localhost/...
    _negotiate(api, timeout)
    return client


def _negotiate(api: Any, timeout: float) -> None:
    """Talk the daemon's highest API version, as the SDK's version="auto" does, but read it from the
    Api-Version header of `/_ping` (under a millisecond) rather than from `/version` (10-20 ms on Docker
    20.10: it asks containerd, runc and docker-init for theirs). A daemon without the header is asked
    /version."""
    response = api.get(api.base_url + "/_ping", timeout=timeout)
    header = response.headers.get("Api-Version") if response.status_code in (200, 500) else None
    api._version = header or api._retrieve_server_version()


def _ssh_failure(e: BaseException) -> Any:
    """The lbgen.ssh_transport.SshFailed somewhere in e's causes (requests and the SDK wrap it), or None."""
    from lbgen.ssh_transport import SshFailed

    seen: set[int] = set()
    stack: list[BaseException] = [e]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SshFailed):
            return current
        stack += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        stack += [x for x in (getattr(current, "reason", None), current.__cause__, current.__context__)
                  if isinstance(x, BaseException)]
    return None


def _tar_files(directory: str, files: Sequence[FileSpec]) -> bytes:
    """An in-memory tar: a root-owned directory, then each file in it with its mode and owner (Docker
    extracts with the owners the headers give)."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo(directory)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        folder.mtime = now
        tar.addfile(folder)
        for spec in files:
            member = tarfile.TarInfo(f"{directory}/{spec.name}")
            member.size = len(spec.data)
            member.mode = spec.mode
            member.uid, member.gid = spec.uid, spec.gid
            member.mtime = now
            tar.addfile(member, io.BytesIO(spec.data))
    return buffer.getvalue()


def _tar_many(files: Mapping[str, bytes], mode: int) -> bytes:
    """An in-memory tar of root-owned files (relative paths), no directory entries."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = mode
            member.uid = member.gid = 0
            member.uname = member.gname = "root"
            member.mtime = now
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _client_url(client: Any) -> str | None:
    """Where a given client talks to, as DOCKER_HOST would say it (None for its unix socket)."""
    url = str(getattr(getattr(client, "api", None), "base_url", "") or "")
    if not url or url.startswith("http+"):
        return None
    return re.sub(r"^https?://", "tcp://", url)


def _explain(e: Any) -> str:
    return str(getattr(e, "explanation", None) or e)


def _no_such_container(e: Any) -> bool:
    return "no such container" in _explain(e).lower()


def _reason(e: BaseException) -> str:
    """The root cause of a connection failure ("Connection refused"), not three layers of wrappers."""
    seen: set[int] = set()
    stack: list[BaseException] = [e]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if isinstance(current, TimeoutError):
            return "timed out"
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        nested += [x for x in (getattr(current, "reason", None), current.__cause__, current.__context__)
                   if isinstance(x, BaseException)]
        stack.extend(nested)
    text = str(e)
    return text if len(text) <= 300 else text[:297] + "..."
