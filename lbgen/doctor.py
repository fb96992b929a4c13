"""`lbgen doctor`: every precondition of lbgen on the user's real set-up, checked (tried where it can be,
never guessed), one verdict per check with the exact fix, in the monitoring-plugin convention of
`lbgen health` (OK / WARNING / CRITICAL, exit 0 / 1 / 2; UNKNOWN 3 is the CLI's for a bad lbgen.yaml)."""
from __future__ import annotations

import time

import json
import re
from dataclasses import asdict, dataclass
from typing import Callable, Generator, Iterator

from lbgen.core import Core
from lbgen.doctor_stream import stream_module_checks
from lbgen.probe import ENGINE
from lbgen.proxies.base import ConfigDump
from lbgen.engine import ROOT, ContainerInfo, Engine
from lbgen.errors import ConfigReadOnly, ContainerNotFound, LbgenError, ProxyError
from lbgen.health import check_all
from lbgen.expiry import served_certs
from lbgen.model import CRITICAL, OK, STATUS_NAMES, WARNING
from lbgen.report import PLUGIN_NAME
from lbgen.render import parse_meta

# `sh -c PROBE sh PATH`, as root: is PATH writable where lbgen needs it? Opening the file for appending
# writes nothing (content and mtime stay); the sibling probe is where .lbgen-new / .lbgen-prev go.
PROBE_SCRIPT = r"""
path=$1; probe="$path.lbgen-probe"
if [ -e "$path" ]; then : >> "$path" || exit 5; fi
: > "$probe" || exit 6
rm -f "$probe"
"""


@dataclass(frozen=True)
class Check:
    """One verdict: `status` is OK, WARNING or CRITICAL; `fix` says exactly what to change (empty when OK)."""

    name: str
    status: int
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{STATUS_NAMES[self.status]:<8} {self.name}: {self.message}"
        return text + (f" Fix: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "status": STATUS_NAMES[self.status]}


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def status(self) -> int:
        return max((c.status for c in self.checks), default=OK)

    @property
    def exit_code(self) -> int:
        return self.status

    def text(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in (CRITICAL, WARNING, OK)}
        summary = (f"{PLUGIN_NAME} DOCTOR {STATUS_NAMES[self.status]} - {len(self.checks)} checks: "
                   f"{counts[CRITICAL]} critical, {counts[WARNING]} warning, {counts[OK]} ok")
        return "\n".join([summary, *(c.line() for c in self.checks)])

    def to_json(self) -> str:
        return json.dumps({"status": STATUS_NAMES[self.status], "exit_code": self.exit_code,
                           "checks": [c.to_dict() for c in self.checks]}, indent=1)


class Stop(Exception):
    """A check failed that the ones after it depend on."""


def diagnose(core: Core) -> DoctorReport:
    """Run every check against the real set-up, in dependency order; later checks that depend on a
    failed one are left out (the failed one says what to fix first)."""
    checks: list[Check] = []
    try:
        for check in _checks(core):
            checks.append(check)
    except Stop:
        pass
    return DoctorReport(tuple(checks))


def _checks(core: Core) -> Iterator[Check]:
    config = core.config

    # Docker: the engine lbgen discovers on, and the proxy's when proxy.docker_host names another (each
    # connected here, so that an engine that does not answer is this check's verdict).
    host = config.proxy.docker_host
    engines: list[tuple[str, Callable[[], Engine], str, str]] = [
        ("docker", lambda: core.engine, "", "point DOCKER_HOST at it")]
    if host is not None:
        engines.append(("proxy-docker", lambda: core.proxy_engine, f" at {host}",
                        f"set proxy.docker_host to it ({host} now)"))
    for name, engine, at, point in engines:
        try:
            version = engine().version()
        except LbgenError as e:
            yield Check(name, CRITICAL, f"{e}", f"start the Docker daemon, or {point}")
            raise Stop from None
        yield Check(name, OK, f"Docker {version} answers{at}")

    # The proxy container (or the one running task of the Swarm service it names): exists, runs, is the
    # configured kind.
    info = yield from _proxy_check(core)
    proxy = core.proxy
    kind = proxy.kind
    yield _kind_check(core, info)
    try:
        kind.preflight(info, proxy.path, proxy.read_live())
    except ProxyError as e:
        yield Check("reload", CRITICAL, str(e).split("; nothing was changed")[0],
                    "run HAProxy with -W (the official image's entrypoint adds it), or `master-worker` in "
                    "its global section")
    else:
        how = f"signal {kind.reload_signal} to PID 1" if kind.master_is_pid1(info.command) else \
            f"`{kind.binary} -s reload`"
        yield Check("reload", OK, f"{kind.name} reloads gracefully ({how})")

    # The networks lbgen routes on, and reaching the proxy from here.
    attached = yield from _network_checks(core, info)

    yield from _config_path_checks(core, info)
    if proxy.main_path is not None:
        dump = proxy.config_dump()
        if dump is not None:
            yield from _main_context_checks(core, dump)
            yield from (Check(*v) for v in stream_module_checks(core, dump))
            yield from _stock_site_checks(core, dump)
    yield _exec_user_check(core, info)
    yield _state_check(core)
    yield from _tls_checks(core)
    if attached:
        yield _checks_mode_check(core)
        yield _status_check(core)
        yield from _backend_checks(core)
    if config.templates_dir is not None:
        yield _templates_check(core)


def _proxy_check(core: Core) -> Generator[Check, None, ContainerInfo]:
    """The proxy's container (a Swarm service's one running task when proxy.container names a service),
    after its check; Stop when there is none to drive."""
    proxy = core.proxy
    name, kind = proxy.name, proxy.kind
    try:
        proxy.ref()
    except ContainerNotFound as e:
        if proxy.named_service() is None:
            yield Check("proxy", CRITICAL, f"no container named {name}",
                        f"start the {kind.name} container, or set proxy.container in {core.config.source}")
        else:
            yield Check("proxy", CRITICAL, str(e).split("; ")[0], f"docker service scale {name}=1")
        raise Stop from None
    info = proxy.engine.get_container(proxy.ref())  # as it is now, not as the proxy last saw it
    if not info.running:
        yield Check("proxy", CRITICAL, f"container {name} is not running", f"docker start {name}")
        raise Stop from None
    return info


def _network_checks(core: Core, info: ContainerInfo) -> Generator[Check, None, bool]:
    """One check per network lbgen.yaml lists: CRITICAL when the proxy is on none of them (nothing can be
    routed), WARNING for each listed one it is not on (backends found only there are not routed)."""
    proxy = core.proxy
    networks = core.config.networks
    attached = [n for n in networks if n in info.networks]
    service = proxy.is_service_task

    def connect(network: str) -> str:
        if service:
            return f"docker service update --network-add {network} {proxy.name}"
        return f"docker network connect {network} {proxy.name}"

    if not attached:
        listed = networks[0] if len(networks) == 1 else f"any of {', '.join(networks)}"
        yield Check("network", CRITICAL, f"proxy container {info.name} is not attached to network {listed}",
                    connect(networks[0]))
        return False
    yield Check("network", OK, f"{info.name} is on " + ", ".join(f"{n} at {info.networks[n]}" for n in attached))
    for network in networks:
        if network not in attached:
            yield Check("network", WARNING, f"proxy container {info.name} is not attached to network {network}: "
                        f"backends found only there are not routed", connect(network))
    return True


def _kind_check(core: Core, info: ContainerInfo) -> Check:
    kind = core.proxy.kind
    result = kind.version_output(core.proxy_engine, info)
    first = (result.output.strip().splitlines() or ["no output"])[0]
    if result.exit_code != 0:
        return Check("proxy", CRITICAL, f"container {info.name} has no working {kind.binary} ({first})",
                     f"set proxy.kind in {core.config.source} to the proxy this container runs, or "
                     f"proxy.container to your {kind.name} container")
    return Check("proxy", OK, f"{info.name} runs {first}")


def _config_path_checks(core: Core, info: ContainerInfo) -> Iterator[Check]:
    proxy = core.proxy
    mount = proxy.mount()
    if mount is None:
        where = "the container's own filesystem (lost when the container is re-created; lbgen apply " \
                "writes it again)"
    elif proxy.swap_mode() == "overwrite":
        where = f"a single-file {mount.describe()}, written over in place (not atomically: see the README)"
    else:
        where = f"{mount.describe()}, replaced by an atomic rename"
    try:
        proxy.check_writable()
    except ConfigReadOnly as e:
        message, _, fix = str(e).partition("; lbgen must write it. ")
        yield Check("config-path", CRITICAL, message + " (read-only)",
                    fix.replace("; nothing was changed", "") or "mount it read-write")
        return
    result = core.proxy_engine.exec(proxy.ref(), ["sh", "-c", PROBE_SCRIPT, "sh", proxy.path], user=ROOT)
    if result.exit_code != 0:
        what = proxy.path if result.exit_code == 5 else f"the directory of {proxy.path}"
        detail = (result.output.strip().splitlines() or ["no output"])[-1]
        yield Check("config-path", CRITICAL, f"{what} is not writable in {info.name}, even as root ({detail})",
                    "mount the config read-write, or point proxy.config_path at a writable place the proxy reads")
        return
    yield Check("config-path", OK, f"{proxy.path} is on {where}; writable (tried)")


def _exec_user_check(core: Core, info: ContainerInfo) -> Check:
    result = core.proxy_engine.exec(core.proxy.ref(), ["id", "-u"], user=ROOT)
    runs_as = info.user or "root"
    if result.exit_code != 0 or result.output.strip() != "0":
        return Check("exec-user", CRITICAL, f"cannot run commands as root in {info.name} "
                     f"({result.output.strip()[:120] or 'exit ' + str(result.exit_code)})",
                     "lbgen runs its install steps with `docker exec -u 0`; allow it (no user-namespace "
                     "or authorization plugin refusing it)")
    return Check("exec-user", OK, f"the container runs as {runs_as}; lbgen's steps run as root and leave "
                 "its files readable (0644)")


def _state_check(core: Core) -> Check:
    holder = core.store.holder.name
    try:
        world = core.read_world()
    except (LbgenError, OSError) as e:
        return Check("state", CRITICAL, f"cannot read lbgen's record in container {holder}: {e}",
                     "lbgen keeps it in a never-started container on the engine (docs/state.md)")
    state = world.state
    recorded = ", ".join(f"{k}={v}" for k, v in sorted(world.active.items()) if v) or "none recorded yet"
    if world.assumed:
        assumed = ", ".join(f"{k}={v}" for k, v in sorted(world.assumed.items()))
        return Check("state", WARNING, f"active env assumed, not recorded: {assumed} (no switch on record in "
                     f"container {holder}; several envs present)",
                     "run `lbgen switch --service SERVICE --env ENV` to record which env is live")
    return Check("state", OK, f"record readable in container {holder} ({len(state.history)} switches; "
                 f"active: {recorded})")


def _main_context_checks(core: Core, dump: ConfigDump) -> Iterator[Check]:
    """nginx: whether nginx reads lbgen's main-context file, shown only when lbgen.yaml needs it (or the
    config cannot be read at all)."""
    proxy = core.proxy
    path = proxy.main_path or ""
    needs = core.main_context_needed()
    directive = proxy.kind.include_directive(path)
    if dump.error is not None:
        yield Check("nginx-config", WARNING, f"`nginx -T` fails in {proxy.name}: {dump.error}",
                    "fix the config nginx reads (docker exec " + proxy.name + " nginx -t)")
        return
    if not needs:
        return
    # Without the file nginx serves no TCP service (apply refuses them); drain_timeout alone only degrades.
    severity = CRITICAL if core.tcp_services() else WARNING
    if not proxy.main_writable():
        yield Check("main-context", severity, f"{', '.join(needs)} needs {path}, which is read-only in "
                    f"{proxy.name}", f"set proxy.main_config_path in {core.config.source} to a writable place "
                    "outside conf.d, and include that from nginx.conf")
    elif dump.includes(path):
        yield Check("main-context", OK, f"nginx.conf includes {path}, which applies {', '.join(needs)}")
    elif core.tcp_services():
        yield Check("main-context", CRITICAL, f"{', '.join(needs)} needs nginx to read {path}, and nginx.conf "
                    "does not include it: nginx does not serve the TCP services (lbgen apply refuses them)",
                    f"add `{directive}` at the top level of nginx.conf, after any load_module line: mount your "
                    f"own nginx.conf, or in a Dockerfile: RUN echo '{directive}' >> /etc/nginx/nginx.conf")
    else:
        yield Check("main-context", WARNING, f"{', '.join(needs)} needs nginx to read {path}, and nginx.conf "
                    "does not include it: old workers keep their connections after a reload until those close",
                    f"add `{directive}` at the top level of nginx.conf (outside http {{}}): mount your own "
                    f"nginx.conf, or in a Dockerfile: RUN sed -i '1i {directive}' /etc/nginx/nginx.conf")


# The nginx image's stock site: conf.d/default.conf serving the welcome page as server_name localhost.
_STOCK_NAME = re.compile(r"^\s*server_name\s+localhost\s*;", re.M)
_STOCK_ROOT = re.compile(r"^\s*root\s+/usr/share/nginx/html\s*;", re.M)
_LISTEN = re.compile(r"^\s*listen\s+(?:\[[0-9a-fA-F:]*\]:|[0-9.]+:)?(\d+)\b", re.M)


def _stock_site_checks(core: Core, dump: ConfigDump) -> Iterator[Check]:
    """nginx: the official image's unmodified conf.d/default.conf on a port an lbgen service listens on
    takes every request for Host localhost there. lbgen does not edit it (not its file): it says so."""
    ports: dict[int, str] = {}
    for name, svc in core.config.services.items():
        for port in (svc.listen, svc.tls.listen if svc.tls else None):
            if port is not None:
                ports.setdefault(port, name)
    for path, text in dump.files.items():
        if not path.endswith("/default.conf") or not (_STOCK_NAME.search(text) and _STOCK_ROOT.search(text)):
            continue
        shared = sorted({int(p) for p in _LISTEN.findall(text)} & set(ports))
        if not shared:
            continue
        on = ", ".join(f"{p} (service {ports[p]})" for p in shared)
        yield Check("stock-site", WARNING, f"the nginx image's stock {path} (server_name localhost, the "
                    f"\"Welcome to nginx!\" page) also listens on port {on}: requests with Host: localhost "
                    f"(e.g. curl http://localhost/ with -p 80:80) get that page, not lbgen's service",
                    f"remove it where the image is built (RUN rm {path} in your Dockerfile), or mount your "
                    f"own directory over {path.rsplit('/', 1)[0]}")


def _checks_mode_check(core: Core) -> Check:
    mode = core.check_mode
    if mode == ENGINE:
        return Check("checks", OK, f"engine: the status listener and backends are checked from inside "
                     f"{core.proxy.name} through Docker ({core.check_mode_reason})")
    return Check("checks", OK, f"direct: lbgen checks the status listener and backends from here "
                 f"({core.check_mode_reason})")


def _from_where(core: Core) -> str:
    return f"from inside {core.proxy.name}" if core.check_mode == ENGINE else "from here"


def _status_check(core: Core) -> Check:
    proxy = core.proxy
    port = core.config.proxy.status_port
    live = proxy.read_live()
    ours = parse_meta(live or "") is not None
    served = proxy.served(timeout=2.0)
    where = f"{proxy.address()}:{port}"
    if served.generation is not None:
        return Check("status-listener", OK, f"lbgen reaches the status listener at {where} {_from_where(core)} "
                     f"(generation {served.generation})")
    if not ours:
        listening = _listening(core, port)
        if listening:
            return Check("status-listener", CRITICAL, f"port {port} is already in use in {proxy.name}",
                         f"set proxy.status_port in {core.config.source} to a free port")
        return Check("status-listener", OK, f"port {port} is free in {proxy.name}; no lbgen config is live yet "
                     "(lbgen apply installs the listener)")
    if core.check_mode == ENGINE:
        return Check("status-listener", CRITICAL, f"the status listener at {where} does not answer from inside "
                     f"{proxy.name} ({served.body or 'no answer'})",
                     "if proxy.status_port changed, run lbgen apply; else check that nothing else in the "
                     "container holds that port")
    return Check("status-listener", CRITICAL, f"lbgen cannot reach the proxy's status listener at {where} "
                 f"from here ({served.body or 'no answer'})",
                 f"run lbgen where it reaches network {core.config.network} (in a container on it, or on the "
                 f"Docker host for a local bridge network), or set `checks: engine`; if proxy.status_port "
                 f"changed, run lbgen apply")


def _listening(core: Core, port: int) -> bool:
    """Whether something listens on TCP `port` in the proxy container (its /proc/net/tcp{,6})."""
    result = core.proxy_engine.exec(core.proxy.ref(), ["cat", "/proc/net/tcp", "/proc/net/tcp6"], user=ROOT)
    wanted = f":{port:04X}"
    for line in result.output.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == "0A":  # 0A: LISTEN
            return True
    return False


def _backend_checks(core: Core) -> Iterator[Check]:
    try:
        inventory = core.source.discover()
    except LbgenError as e:
        yield Check("backends", CRITICAL, f"discovery failed: {e}", "see the message")
        return
    for skipped in inventory.skipped:
        yield Check("backends", WARNING, str(skipped), "fix its labels, or remove the lbgen labels to silence this")
    for name, service in core.config.services.items():
        found = inventory.for_service(name)
        if not found:
            yield Check(f"service {name}", WARNING, f"no backends found on network {core.config.network}",
                        f"start containers labelled {core.config.label_prefix}.service={name} on "
                        f"{core.config.network}")
            continue
        results = check_all(found, service.health, core.checker)
        unreachable = [r for r in results if not r.detail.startswith(("HTTP", "docker health", "TCP connect"))]
        envs = sorted({b.env or "-" for b in found})
        summary = f"{len(found)} backends found (envs: {', '.join(envs)})"
        where = _from_where(core)
        if unreachable and len(unreachable) == len(results):
            fix = (f"check that they listen on their port on network {core.config.network}"
                   if core.check_mode == ENGINE else
                   f"run lbgen where it reaches network {core.config.network}, or set `checks: engine`")
            yield Check(f"service {name}", CRITICAL, f"{summary}; none of them reachable {where} "
                        f"({'; '.join(r.describe() for r in unreachable[:3])})", fix)
        elif unreachable:
            yield Check(f"service {name}", WARNING, f"{summary}; unreachable {where}: "
                        f"{'; '.join(r.describe() for r in unreachable[:3])}", "check those containers")
        else:
            yield Check(f"service {name}", OK, f"{summary}; all reachable {where}")


def _tls_checks(core: Core) -> Iterator[Check]:
    """Each certificate the live config serves, with its days left (the same verdict as `lbgen health`);
    shown only when a service has `tls`."""
    wanted = sorted(name for name, svc in core.config.services.items() if svc.tls is not None)
    if not wanted:
        return
    served = served_certs(core.config, core.proxy.read_live(), time.time())
    for cert in served:
        fix = "" if cert.status == OK else (f"renew the certificate of service {cert.service} and run "
                                            f"`lbgen apply` (an ACME deploy hook does both: examples/tls/)")
        yield Check(f"tls {cert.service}", cert.status, cert.describe().split(": ", 1)[1], fix)
    missing = [name for name in wanted if name not in {c.service for c in served}]
    if missing:
        yield Check("tls", WARNING, f"no certificate served yet for {', '.join(missing)}", "run `lbgen apply`")


def _templates_check(core: Core) -> Check:
    directory = core.config.templates_dir
    assert directory is not None
    name = core.proxy.kind.template_name
    if not directory.is_dir():
        return Check("templates", CRITICAL, f"templates_dir {directory} does not exist",
                     f"create it, or remove templates_dir from {core.config.source}")
    if not (directory / name).is_file():
        return Check("templates", OK, f"{directory} holds no {name}: the built-in template is used")
    return Check("templates", OK, f"{directory}/{name} overrides the built-in template")


