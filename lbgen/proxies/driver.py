"""The proxy driver: install a rendered config into the running proxy container, validate it with the
proxy's own binary, reload gracefully, verify what is served, and restore the previous config on any
failure. Whatever differs between kinds it asks the proxy's ProxyKind (lbgen.proxies).

Imports the kinds (lbgen.proxies), config, engine, errors, health and render; the kinds never import it.

The file is delivered through the Docker API (no bind mount), so a remote DOCKER_HOST works. On disk
the swap is a rename: a killed lbgen leaves either the old or the new file, plus at most a
`.lbgen-prev` copy that `reconcile()` settles against what the proxy actually serves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from lbgen.config import ProxyConfig
from lbgen.engine import ROOT, ContainerInfo, Engine, FileSpec, Mount, ServiceInfo, network_named
from lbgen.errors import (ConfigReadOnly, ConfigWriteFailed, ContainerNotFound, DockerUnavailable, ProxyError,
                          ProxyRejectedConfig, ReloadFailed, RuntimeApiError)
from lbgen.health import HttpGet
from lbgen.proxies import kind_named
from lbgen.proxies.base import ConfigDump, first_error
from lbgen.proxies.passwd import lookup
from lbgen.proxies.scripts import INSTALL_SCRIPT, RESTORE_SCRIPT
from lbgen.render import TLS_RE, TlsFile, parse_meta
from lbgen.timings import Timings, phase

RENAME = "rename"
OVERWRITE = "overwrite"


@dataclass(frozen=True)
class Served:
    """What the proxy answers on its lbgen status listener."""

    generation: str | None
    body: str
    # how that generation went live: "reload" (the listener says it), or "runtime" (the listener says the
    # generation it was reloaded with, and the worker's runtime state matches the file's servers)
    via: str = "reload"


class Proxy:
    """One running proxy container, driven through an Engine.

    `proxy.container` may name a Swarm service with one task: `manager` (the engine that knows the
    services; default `engine`) finds the task's container, which `engine` then drives.
    """

    def __init__(self, engine: Engine, config: ProxyConfig, network: str | Iterable[str],
                 get: HttpGet | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, verify_timeout: float = 10.0,
                 manager: Engine | None = None) -> None:
        self.engine = engine
        self.manager = manager or engine
        self.config = config
        self.networks = (network,) if isinstance(network, str) else tuple(network)
        self.network = self.networks[0]
        self.get = get
        self.clock = clock
        self.sleep = sleep
        self.verify_timeout = verify_timeout
        self.kind = kind_named(config.kind)
        self._info: ContainerInfo | None = None
        self._version: tuple[int, ...] | None = None
        self._ref: str | None = None  # the container to drive, once known (the task's, for a service)
        self._service_id: str | None = None  # set when proxy.container names a Swarm service

    @property
    def name(self) -> str:
        return self.config.container

    @property
    def path(self) -> str:
        return self.config.config_path

    def ref(self) -> str:
        """The container lbgen drives: `proxy.container` itself, or the container of the single running
        task of the Swarm service of that name. ContainerNotFound when neither exists."""
        if self._ref is None:
            try:
                self.engine.get_container(self.name)
                self._ref = self.name
            except ContainerNotFound as e:
                self._ref = self._task_container(e)
        return self._ref

    @property
    def is_service_task(self) -> bool:
        """Whether the container driven is the task of the Swarm service `proxy.container` names."""
        self.ref()
        return self._service_id is not None

    def named_service(self) -> ServiceInfo | None:
        """The Swarm service `proxy.container` names, or None (an engine that is no Swarm manager is not
        asked)."""
        return self.manager.get_service(self.name) if self.manager.swarm_manager() else None

    def _task_container(self, missing: ContainerNotFound) -> str:
        service = self.named_service()
        if service is None:
            raise missing
        running = [t for t in self.manager.list_tasks([service.id])
                   if t.state == "running" and t.desired_state == "running" and t.container_id]
        if len(running) != 1:
            raise ContainerNotFound(f"Swarm service {self.name} has {len(running)} running tasks; lbgen drives a "
                                    f"proxy service with exactly one (docker service scale {self.name}=1)")
        self._service_id = service.id
        return running[0].container_id

    def key(self) -> str:
        """What lbgen's lock is keyed by: the proxy container's id, or for a Swarm service its service id
        (which outlives the task's container)."""
        info = self.info()
        return self._service_id or info.id

    def info(self, refresh: bool = False) -> ContainerInfo:
        if self._info is None or refresh:
            if refresh:
                self._ref = None
            info = self.engine.get_container(self.ref())
            if not info.running:
                raise ContainerNotFound(f"proxy container {self.name} is not running")
            self._info = info
        return self._info

    def address(self) -> str:
        """The proxy's IP on the first configured network it is attached to."""
        info = self.info()
        for ref in self.networks:
            name = network_named(ref, info.networks, info.network_ids)
            if name is not None and name in info.networks:
                address = info.networks[name]
                return f"[{address}]" if ":" in address else address
        if len(self.networks) == 1:
            raise ContainerNotFound(
                f"proxy container {self.name} is not attached to network {self.network}; "
                f"attach it (docker network connect {self.network} {self.name})"
            )
        raise ContainerNotFound(f"proxy container {self.name} is attached to none of the networks "
                                f"{', '.join(self.networks)}; attach it to at least one")

    def read_live(self) -> str | None:
        """The config file as it is on the proxy's disk now, or None."""
        data = self.engine.read_file(self.ref(), self.path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def preflight(self, live: str | None) -> None:
        """Refuse before changing anything when the proxy cannot be reloaded gracefully and verified:
        not running, not on the network (lbgen verifies through it), HAProxy outside master-worker mode,
        the config path on a read-only mount."""
        self.address()
        self.check_writable()
        self.kind.preflight(self.info(), self.path, live)

    @property
    def main_path(self) -> str | None:
        """nginx's main-context file (proxy.main_config_path); None for a kind without one."""
        return self.config.main_config_path

    def mount(self, path: str | None = None) -> Mount | None:
        """The mount holding the config path (or `path`), or None when it is in the container's own filesystem."""
        return self.info().mount_of(path or self.path)

    def swap_mode(self, path: str | None = None) -> str:
        """OVERWRITE when the config path (or `path`) is itself a mounted file (a rename cannot replace it),
        else RENAME."""
        mount = self.mount(path)
        return OVERWRITE if mount is not None and mount.destination.rstrip("/") == (path or self.path) else RENAME

    def main_writable(self) -> bool:
        """Whether lbgen can write the main-context file as Docker reports it (no read-only mount or root
        filesystem there). lbgen writes it whenever it can; nginx reads it only when nginx.conf includes it."""
        if self.main_path is None:
            return False
        mount = self.mount(self.main_path)
        return mount.rw if mount is not None else not self.info().read_only_rootfs

    def main_to_write(self, main: str | None) -> str | None:
        """The main-context text an install writes: `main`, unless this proxy has no writable place for it."""
        return main if main is not None and self.main_writable() else None

    def read_main(self) -> str | None:
        """The main-context file as it is on the proxy's disk now, or None (none, or no such kind)."""
        if self.main_path is None:
            return None
        data = self.engine.read_file(self.ref(), self.main_path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def config_dump(self) -> ConfigDump | None:
        """Every file the proxy reads now and their text (`nginx -T`); None when the kind cannot say."""
        return self.kind.config_dump(self.engine, self.info())

    def main_included(self) -> bool | None:
        """Whether the proxy reads the main-context file (nginx.conf includes it); None when unknown
        (the proxy could not dump its config) or the kind has none."""
        dump = self.config_dump() if self.main_path is not None else None
        if dump is None or dump.error is not None:
            return None
        assert self.main_path is not None
        return dump.includes(self.main_path)

    def check_writable(self) -> None:
        """ConfigReadOnly when Docker reports the config path read-only (a `:ro` mount, or `--read-only`
        without a writable mount there); nothing has changed yet."""
        mount = self.mount()
        if mount is not None and not mount.rw:
            raise ConfigReadOnly(
                f"{self.path} in proxy container {self.name} is on a read-only {mount.describe()}; lbgen "
                f"must write it. Mount it read-write (drop `:ro` from the -v/--mount of {mount.destination}); "
                f"nothing was changed")
        if mount is None and self.info().read_only_rootfs:
            raise ConfigReadOnly(
                f"{self.path} in proxy container {self.name} is on its read-only root filesystem "
                f"(docker run --read-only); mount a writable volume or directory at "
                f"{self.path.rsplit('/', 1)[0] or '/'}; nothing was changed")

    def version(self) -> tuple[int, ...] | None:
        """The proxy's version, as its binary prints it (asked once); None when it does not say."""
        if self._version is None:
            self._version = self.kind.version(self.engine, self.ref()) or ()
        return self._version or None

    def install(self, text: str, files: Sequence[TlsFile] = (), live: str | None = None,
                main: str | None = None, timings: Timings | None = None) -> None:
        """Upload (the TLS files the text refers to first), validate with the proxy's own binary, and swap
        in. On rejection the live file is untouched. `live` is the config on disk now (None: none, or
        not read): the files it and the config before it refer to are kept, for a rollback. `main`: the
        main-context file's text, installed with `text` in the same step (validated together, both
        restored together) where lbgen can write it (`main_writable`). `timings` gets the phases deliver
        (the uploads) and validate (the proxy's check and the swap)."""
        main = self.main_to_write(main)
        with phase(timings, "deliver"):
            self.check_writable()
        tls_dir = self.kind.tls_dir(self.path)
        keep: set[str] = set()
        if files or (live and TLS_RE.search(live)):
            keep = _tls_paths(live, tls_dir)
            prev = self.engine.read_file(self.ref(), self.path + ".lbgen-prev")
            older = _tls_paths(prev.decode("utf-8", errors="replace") if prev is not None else None, tls_dir)
            new = {f.path for f in files}
            with phase(timings, "deliver"):
                self.deliver([f for f in files if f.path not in keep], tls_dir)
            try:
                self._install(text, main, timings)
            except (ProxyRejectedConfig, ProxyError):
                self._remove(new - keep - older)  # a rejected config's files: nothing refers to them
                raise
            # Live now: `text` and, as .lbgen-prev, the config it replaced; the one before goes.
            self._remove(older - keep - new)
            return
        self._install(text, main, timings)

    def deliver(self, files: Sequence[TlsFile], tls_dir: str) -> None:
        """Certificates world-readable, keys 0600 and owned by the user the proxy runs as (root, or e.g.
        `haproxy` in the official image), in one archive through the Docker API."""
        if not files:
            return
        uid, gid = self.file_owner() if any(f.secret for f in files) else (0, 0)
        specs = [FileSpec(f.path.rsplit("/", 1)[-1], f.data, 0o600 if f.secret else 0o644,
                          uid if f.secret else 0, gid if f.secret else 0) for f in files]
        try:
            self.engine.put_files(self.ref(), tls_dir, specs)
        except DockerUnavailable:
            raise
        except OSError as e:
            raise ProxyError(f"cannot write certificates into {tls_dir} in proxy container {self.name}: {e}; "
                             f"the previous config is still live") from e

    def file_owner(self) -> tuple[int, int]:
        """uid and gid of the user the proxy container runs as (its config's User; names looked up in its
        /etc/passwd and /etc/group)."""
        user, _, group = self.info().user.partition(":")
        uid, gid = lookup(self.engine, self.ref(), "/etc/passwd", user or "0")
        if group:
            gid = lookup(self.engine, self.ref(), "/etc/group", group)[0]
        return uid, gid

    def _remove(self, paths: set[str]) -> None:
        if paths:
            self.engine.exec(self.ref(), ["rm", "-f", *sorted(paths)])

    def _install(self, text: str, main: str | None = None, timings: Timings | None = None) -> None:
        also: list[str] = []
        extra: dict[str, bytes] = {}
        if main is not None and self.main_path is not None:
            extra[self.main_path + ".lbgen-new"] = main.encode()
            also = ["--also", self.main_path, self.swap_mode(self.main_path)]
        # On an engine where that is cheaper, the files go in on the install script's standard input (the
        # config's bytes, then the main-context file's): delivery and validation in one round trip.
        # Otherwise both in one archive first.
        data = text.encode()
        stdin = data + b"".join(extra.values()) if getattr(self.engine, "exec_input", False) else None
        try:
            with phase(timings, "deliver"):
                if stdin is None:
                    self.engine.put_file(self.ref(), self.path + ".lbgen-new", data, 0o644, also=extra)
        except PermissionError as e:
            raise ConfigReadOnly(f"cannot write {self.path} in proxy container {self.name}: {e} (read-only); "
                                 f"make it writable; nothing was changed") from e
        except DockerUnavailable as e:
            if isinstance(e, ContainerNotFound):
                raise
            raise ConfigWriteFailed(f"Docker could not write {self.path} into proxy container {self.name}: {e}; "
                                    f"the previous config is still live") from e
        except OSError as e:
            raise ConfigWriteFailed(f"cannot write {self.path} in proxy container {self.name}: {e}; "
                                    f"the previous config is still live") from e
        swap = self.swap_mode()
        given = ["--stdin", str(len(data))] if stdin is not None else []
        with phase(timings, "validate"):  # with `stdin`, the delivery too
            result = self.engine.exec(self.ref(), ["sh", "-c", INSTALL_SCRIPT, "sh", self.path,
                                                  self.kind.validate_mode, swap, *given, *also,
                                                  *self.kind.validator], user=ROOT, stdin=stdin)
        if result.exit_code == 5:
            raise ConfigWriteFailed(f"cannot write {self.path} in proxy container {self.name}: "
                                    f"{first_error(result.output)}; the previous config is still live")
        if result.exit_code == 3:
            raise ProxyRejectedConfig(
                f"{self.config.kind} rejected the rendered config: {first_error(result.output)}; "
                f"the previous config is still live"
            )
        if result.exit_code != 0:
            raise ConfigWriteFailed(f"cannot install {self.path} in proxy container {self.name}: "
                                    f"{first_error(result.output)}; the previous config is still live")

    def reload(self) -> None:
        """Ask the proxy's master process to reload gracefully, as its kind does (nginx: HUP or
        `nginx -s reload`, HAProxy master-worker: USR2)."""
        self.kind.reload(self.engine, self.info())

    def served(self, timeout: float = 2.0) -> Served:
        """Ask the proxy's status listener which generation it serves now."""
        if self.get is None:
            raise ReloadFailed("no HTTP client to verify the proxy with")
        url = f"http://{self.address()}:{self.config.status_port}/lbgen/status"
        try:
            status, body = self.get(url, timeout)
        except (TimeoutError, ConnectionError) as e:
            return Served(None, f"{e}")
        if status != 200:
            return Served(None, f"HTTP {status}")
        generation = None
        for word in body.split():
            if word.startswith("generation="):
                generation = word.split("=", 1)[1]
        return Served(generation, body.strip())

    def wait_serving(self, generation: str, in_a_row: int = 3) -> Served:
        """Poll the status listener until `in_a_row` fresh connections in a row are answered with
        `generation` (just after a reload an old worker may still accept one); raise ReloadFailed after
        verify_timeout."""
        deadline = self.clock() + self.verify_timeout
        hits = 0
        while True:
            served = self.served(timeout=min(2.0, self.verify_timeout))
            hits = hits + 1 if served.generation == generation else 0
            if hits >= in_a_row:
                return served
            if hits:
                continue
            if self.clock() >= deadline:
                raise ReloadFailed(
                    f"{self.config.kind} in {self.name} did not serve generation {generation} within "
                    f"{self.verify_timeout:g}s after reload (it answers: {served.body or 'nothing'})"
                )
            self.sleep(0.01)

    def restore(self) -> None:
        """Put the previous config back on disk, and the previous main-context file with it (the caller
        reloads)."""
        swap = self.swap_mode()
        self.engine.exec(self.ref(), ["sh", "-c", RESTORE_SCRIPT, "sh", self.path, swap], user=ROOT)
        if self.main_path is not None and self.main_writable():
            main_swap = self.swap_mode(self.main_path)
            self.engine.exec(self.ref(), ["sh", "-c", RESTORE_SCRIPT, "sh", self.main_path, main_swap], user=ROOT)

    def go_live(self, text: str, generation: str, plan: object | None,
                timings: Timings | None = None) -> tuple[str, str | None]:
        """Make an installed config live: through the kind's runtime API when `plan` (ProxyKind.runtime_plan)
        says it can, else (or when that fails: the note says why) by reload + verify. Returns (how:
        "runtime" or "reload", a note or None)."""
        note = None
        runtime = self.kind.runtime(self.engine, self.ref(), text) if plan is not None else None
        if runtime is not None:
            try:
                with phase(timings, "runtime"):
                    runtime.make_live(plan, text)
                return "runtime", None
            except RuntimeApiError as e:
                note = f"{e}; reloaded instead"
        self.activate(generation, timings)
        return "reload", note

    def serving(self, live: str | None) -> Served:
        """What the proxy serves of `live`: the listener's generation, or the file's when the listener
        says the generation the file's changes were made on (its base) and the worker's runtime state
        matches the file."""
        served = self.served()
        meta = parse_meta(live or "")
        if meta is None or meta.base is None or served.generation != meta.base:
            return served
        runtime = self.kind.runtime(self.engine, self.ref(), live)
        try:
            if runtime is not None and not runtime.mismatched(live):
                return Served(meta.generation, served.body, via="runtime")
        except RuntimeApiError:
            pass
        return served

    def activate(self, generation: str, timings: Timings | None = None) -> None:
        """reload + verify after install(); restores the previous config on failure."""
        try:
            with phase(timings, "reload"):
                self.reload()
            with phase(timings, "verify"):
                self.wait_serving(generation)
        except ReloadFailed as e:
            self.rollback_to_previous()
            raise ReloadFailed(f"{e}; the previous config was restored") from e

    def rollback_to_previous(self) -> None:
        self.restore()
        previous = self.read_live()
        try:
            self.reload()
            meta = parse_meta(previous or "")
            if meta:
                self.wait_serving(meta.generation)
        except ReloadFailed:
            pass  # the previous config is back on disk; the master kept serving what it had

    def reconcile(self) -> tuple[str | None, str | None]:
        """Settle what a killed lbgen may have left half-done; returns (the live config text, a note of
        what was done or None).

        The only window where disk and proxy disagree is between the swap and the reload. When the proxy
        serves the generation of `.lbgen-prev` (the config before the last install), the swap never took
        effect: the previous file goes back on disk. When it serves something else that lbgen did not
        install last, it is reloaded so that it serves what is on disk (which passed validation).
        """
        live = self.read_live()
        live_meta = parse_meta(live or "")
        if live_meta is None:
            return live, None
        served = self.served()
        if served.generation is None or served.generation == live_meta.generation:
            return live, None
        if live_meta.base is not None and served.generation == live_meta.base:
            # The file went live through the runtime API: the worker must have its servers, nothing else
            # differs. Finish a runtime change cut short (roll forward); reload only when that fails.
            runtime = self.kind.runtime(self.engine, self.ref(), live)
            try:
                fixed = runtime.sync(live or "") if runtime is not None else None
            except RuntimeApiError as e:
                fixed, why = None, str(e)
            else:
                why = "no runtime API"
            if fixed is not None:
                return live, (f"the proxy lacked {fixed} server change(s) of generation {live_meta.generation} "
                              f"(an interrupted runtime change); made them" if fixed else None)
            self.reload()
            self.wait_serving(live_meta.generation)
            return live, f"the runtime state of generation {live_meta.generation} could not be checked ({why}); reloaded"
        prev = self.engine.read_file(self.ref(), self.path + ".lbgen-prev")
        prev_meta = parse_meta(prev.decode("utf-8", errors="replace")) if prev is not None else None
        # The previous file went live by a reload (its generation) or through the runtime API (its base).
        if prev_meta and served.generation in (prev_meta.generation, prev_meta.base):
            self.restore()
            return self.read_live(), ("an interrupted switch had not taken effect; restored the previous "
                                      f"config (generation {served.generation})")
        self.reload()
        self.wait_serving(live_meta.generation)
        return live, f"the proxy served generation {served.generation}, not the installed {live_meta.generation}; reloaded"



def _tls_paths(config_text: str | None, tls_dir: str) -> set[str]:
    """The certificate and key files a config lbgen rendered refers to (its `# lbgen-tls:` lines)."""
    paths: set[str] = set()
    for _, name, _ in TLS_RE.findall(config_text or ""):
        paths |= {f"{tls_dir}/{name}", f"{tls_dir}/{name}.key"}
    return paths
