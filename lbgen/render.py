"""render(): turns a Config and its Pools into proxy config text (the views the templates iterate, and the
header lines that say what is served). Pure: writes nothing. The Jinja2 environment is in templating.py.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from dataclasses import dataclass, field, replace
from typing import Collection, Mapping, Sequence

from lbgen import __version__
from lbgen.certs import CertPair, load_pair
from lbgen.config import Config, ServiceConfig, TlsConfig
from lbgen.config_routes import HostTable, grouped, host_tables
from lbgen.errors import ConfigError
from lbgen.model import Backend, Canary, Maintenance, Pool
from lbgen.proxies import kind_named
from lbgen.proxies.base import PreviousSlot, Slot
from lbgen.sticky import StickyView, sticky_view
from lbgen.templating import make_environment, render_template

GENERATION_PLACEHOLDER = "LBGEN_GENERATION_PLACEHOLDER"
META_PREFIX = "# lbgen-meta: "
META_RE = re.compile(r"^# lbgen-meta: (\{.*\})$", re.M)
# After the meta line, one or more lines per service: its active env and the backends it routes to, by
# container name (`-` for no env). This is how `health` and `status` know what the live config routes to.
# nginx refuses a token (a comment line included) longer than its 4 KiB buffer: lines stay well under it.
POOL_PREFIX = "# lbgen-pool: "
POOL_RE = re.compile(r"^# lbgen-pool: (.*)$", re.M)
POOL_LINE_MAX = 1000
STATUS_BODY_SERVICES = 40  # the status listener's answer names at most this many services' envs
# One line per TLS service: `# lbgen-tls: SERVICE FILE NOT_AFTER`, the certificate file it serves (named by
# the digest of certificate and key) and when that expires; `health` reports expiry from these.
TLS_PREFIX = "# lbgen-tls: "
TLS_RE = re.compile(r"^# lbgen-tls: ([a-z0-9_-]+) ([A-Za-z0-9_.-]+) ([0-9]+)$", re.M)


@dataclass(frozen=True)
class TlsFile:
    """A file the config refers to, delivered into the proxy container before it is validated."""

    path: str  # in the proxy container
    data: bytes = field(repr=False)
    secret: bool = False  # a private key: mode 0600, owned by the proxy's user


@dataclass(frozen=True)
class ServedCert:
    """A certificate a config serves, as its `# lbgen-tls:` line says."""

    service: str
    file: str
    not_after: float


@dataclass(frozen=True)
class Rendered:
    text: str
    generation: str
    active: dict[str, str | None]
    warnings: tuple[str, ...] = ()
    files: tuple[TlsFile, ...] = ()  # certificates and keys the text refers to
    # nginx: the main-context file (proxy.main_config_path), part of the same generation; None for HAProxy
    main: str | None = None


@dataclass(frozen=True)
class TlsView:
    """What a template sees of a service's TLS: its settings and where its files are in the proxy."""

    config: TlsConfig
    cert_path: str
    key_path: str

    @property
    def port_suffix(self) -> str:
        """`:8443` in a redirect when the TLS port is not 443."""
        return "" if self.config.listen == 443 else f":{self.config.listen}"


@dataclass(frozen=True)
class ServiceView:
    """What a template sees of one service."""

    name: str
    config: ServiceConfig
    active_env: str | None
    servers: tuple[Backend, ...]  # primaries first, then backups
    tls: TlsView | None = None
    maintenance: Maintenance | None = None  # `lbgen maintenance on`: 503 with its message and Retry-After
    # A canary is analysed: nginx logs each request as one JSON line to its stdout (lbgen.analysis reads it
    # back through the engine); HAProxy's log line goes there anyway.
    log_requests: bool = False
    # HAProxy: the server lines, spares and slots vacated since the last reload included (runtime API)
    slots: tuple[Slot, ...] = ()
    sticky: StickyView | None = None  # a sticky canary (`switch --sticky cookie`, lbgen.sticky)

    @property
    def upstream(self) -> str:
        return f"lbgen_{self.name}"

    @property
    def primary(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if not s.backup)

    @property
    def backups(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if s.backup)


@dataclass(frozen=True)
class RouteView:
    """One path prefix of a host table and the service it reaches; `acl` names the path in HAProxy."""

    path: str
    service: ServiceView
    acl: str = ""


@dataclass(frozen=True)
class TableView:
    """Requests for some host names (() = any other host) on one port: their routes, longest path first,
    and the service that lists those names (its certificate is theirs)."""

    hosts: tuple[str, ...]
    routes: tuple[RouteView, ...]
    owner: ServiceView | None

    @property
    def has_root(self) -> bool:
        return any(r.path == "/" for r in self.routes)

    @property
    def exact_hosts(self) -> tuple[str, ...]:
        return tuple(h for h in self.hosts if not h.startswith("*."))


@dataclass(frozen=True)
class PortView:
    """One listening port: the services on it, with the host-less one (if any) as the default."""

    port: int
    services: tuple[ServiceView, ...]
    default: ServiceView | None
    tls: bool = False  # a TLS port
    # Host tables in the order a first-match proxy (HAProxy) tries them: exact, wildcards longest first,
    # the default last (lbgen.config_routes).
    tables: tuple[TableView, ...] = ()
    grouped: tuple[TableView, ...] = ()  # the same, tables with equal routes merged (nginx server {}s)
    path_acls: tuple[tuple[str, str], ...] = ()  # (HAProxy acl name, path) per distinct non-root path

    @cached_property
    def first_match(self) -> tuple[TableView, ...]:
        """`tables` for a first-match proxy, exact-name tables with equal routes merged (they cannot
        shadow one another); wildcards stay one per table, longest first. Tables are found by their
        routes' key, not by comparing with every earlier table (1,000 hosts on a port)."""
        out: list[TableView] = []
        merge_into: dict[tuple[tuple[str, str, str], ...], int] = {}  # routes -> an all-exact table
        for table in self.tables:
            key = tuple((r.path, r.service.name, r.acl) for r in table.routes)
            exact = bool(table.hosts) and not table.hosts[0].startswith("*.")
            same = merge_into.get(key) if exact else None
            if same is None:
                out.append(table)
                if table.exact_hosts == table.hosts:
                    merge_into.setdefault(key, len(out) - 1)
            else:
                out[same] = TableView(out[same].hosts + table.hosts, table.routes, out[same].owner)
        return tuple(out)

    @property
    def paths_routed(self) -> bool:
        return bool(self.path_acls)

    @property
    def certs(self) -> tuple[TlsView, ...]:
        """The distinct certificates served on a TLS port, the default service's first."""
        ordered = ([self.default] if self.default else []) + [s for s in self.services if s is not self.default]
        seen: dict[str, TlsView] = {}
        for view in ordered:
            if view.tls is not None:
                seen.setdefault(view.tls.cert_path, view.tls)
        return tuple(seen.values())


@dataclass(frozen=True)
class LiveMeta:
    """What lbgen wrote into a config's header: its generation and the active env per service."""

    generation: str
    active: dict[str, str | None]
    # service -> the backends (container names) the config routes to; None when the config does not say
    # (written by an older lbgen)
    routed: dict[str, frozenset[str]] | None = None
    tls: tuple[ServedCert, ...] = ()  # the certificates it serves
    # Set when this config went live through HAProxy's runtime API: the generation the proxy last loaded
    # (by a reload), from which it differs only in server slots. None: it went live by a reload.
    base: str | None = None


def parse_meta(text: str) -> LiveMeta | None:
    """Read the `# lbgen-meta:` header (and the `# lbgen-pool:` lines) of a config lbgen rendered, or None.
    A config written by an older lbgen carries the active envs in the header and no pool lines."""
    match = META_RE.search(text or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
        generation = str(data["generation"])
        if "active" in data:
            return LiveMeta(generation=generation, active=dict(data["active"]))
        tls = tuple(ServedCert(svc, f, float(t)) for svc, f, t in TLS_RE.findall(text))
    except (ValueError, KeyError, TypeError):
        return None
    active: dict[str, str | None] = {}
    routed: dict[str, set[str]] = {}
    for line in POOL_RE.findall(text):
        service, env, *names = line.split()
        active.setdefault(service, None if env == "-" else env)
        routed.setdefault(service, set()).update(names)
    base = data.get("base")
    return LiveMeta(generation, active, {k: frozenset(v) for k, v in routed.items()}, tls,
                    str(base) if base is not None else None)


def with_base(rendered: Rendered, base: str | None) -> Rendered:
    """`rendered` with `"base"` in its meta line (see LiveMeta.base); its generation, a hash of the text
    without it, stays."""
    meta = {"generation": rendered.generation, "v": 2, **({"base": base} if base else {})}
    line = META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return replace(rendered, text=META_RE.sub(lambda _: line, rendered.text, count=1))


def pool_lines(services: Sequence[ServiceView]) -> list[str]:
    """`# lbgen-pool: SERVICE ENV NAME...` lines: every service at least once, its servers in order."""
    lines = []
    for view in services:
        head = f"{POOL_PREFIX}{view.name} {view.active_env or '-'}"
        line = " ".join([head, *[backend.name for backend in view.servers]])
        if len(line) <= POOL_LINE_MAX:  # the common case: all of them on one line
            lines.append(line)
            continue
        line = head
        for backend in view.servers:
            if len(line) + 1 + len(backend.name) > POOL_LINE_MAX and line != head:
                lines.append(line)
                line = head
            line += " " + backend.name
        lines.append(line)
    return lines


def load_certs(config: Config, now: float | None = None) -> dict[str, CertPair]:
    """Read and check the certificate and key of every service with `tls` (CertificateError, exit 3, when
    one is missing, unparsable, expired or not a pair); {} when none has TLS."""
    return {name: load_pair(svc.tls.cert_file, svc.tls.key_file, shown_cert=svc.tls.cert, shown_key=svc.tls.key,
                            where=f"services.{name}.tls", now=now)
            for name, svc in config.services.items() if svc.tls is not None}


def tls_files(config: Config, certs: Mapping[str, CertPair]) -> tuple[dict[str, TlsView], tuple[TlsFile, ...]]:
    """Per TLS service, where its certificate and key go in the proxy container (named by their digest, so
    the config text changes exactly when they do), and the files to deliver there."""
    directory = kind_named(config.proxy.kind).tls_dir(config.proxy.config_path)
    views: dict[str, TlsView] = {}
    files: dict[str, TlsFile] = {}
    for name, svc in config.services.items():
        if svc.tls is None:
            continue
        pair = certs.get(name)
        if pair is None:
            raise ConfigError(f"services.{name}.tls: no certificate was loaded for it")
        # HAProxy finds the key of `crt X.pem` in `X.pem.key`; nginx is told both names.
        cert_path = f"{directory}/{pair.digest}.pem"
        views[name] = TlsView(svc.tls, cert_path, cert_path + ".key")
        files[cert_path] = TlsFile(cert_path, pair.cert)
        files[cert_path + ".key"] = TlsFile(cert_path + ".key", pair.key, secret=True)
    return views, tuple(files.values())


def tls_lines(views: Sequence[ServiceView], certs: Mapping[str, CertPair]) -> list[str]:
    return [f"{TLS_PREFIX}{v.name} {v.tls.cert_path.rsplit('/', 1)[-1]} {int(certs[v.name].info.not_after)}"
            for v in views if v.tls is not None]


def render(config: Config, pools: Sequence[Pool], certs: Mapping[str, CertPair] | None = None,
           proxy_version: tuple[int, ...] | None = None,
           maintenance: Mapping[str, Maintenance] | None = None, logged: Collection[str] = (),
           layout: Mapping[str, tuple[PreviousSlot, ...]] | None = None,
           canary: Mapping[str, Canary] | None = None) -> Rendered:
    """Render the config for `config.proxy.kind` (and nginx's main-context file, `Rendered.main`); identical
    input gives byte-identical output. `certs` (default: read and checked from the files lbgen.yaml names)
    are the TLS services' certificates; `proxy_version` picks version-dependent syntax (None: syntax every
    supported version accepts); `maintenance` names the services in maintenance mode (State.maintenance);
    `logged`, the services whose requests the proxy logs for an analysis (those with a canary); `layout`
    (HAProxy, runtime API) is the live config's server slots per service, kept where they can hold the
    servers (ProxyKind.slots), else a fresh layout with `proxy.spare_servers` spares; `canary` (State.canary;
    the pools hold its split already) gives a sticky canary its cookie rules (lbgen.sticky)."""
    kind = kind_named(config.proxy.kind)
    if certs is None:
        certs = load_certs(config)
    tls_views, files = tls_files(config, certs)
    by_name = {p.service: p for p in pools}
    warnings: list[str] = []
    views = []
    for name, service in config.services.items():
        pool = by_name.get(name) or Pool(service=name, active_env=None)
        servers, left_out = kind.servers(service.algorithm, pool)
        spares = config.proxy.spare_servers
        slots = kind.slots(servers, layout.get(name) if layout is not None else None, spares)
        if slots is None:
            slots = kind.slots(servers, None, spares) or ()
        warnings.extend(left_out)
        warnings.extend(_uncovered(name, service, certs.get(name)))
        sticky = sticky_view(name, (canary or {}).get(name), pool.active_env, servers) \
            if service.mode != "tcp" else None
        views.append(ServiceView(name=name, config=service, active_env=pool.active_env, servers=servers,
                                 tls=tls_views.get(name), maintenance=(maintenance or {}).get(name),
                                 log_requests=name in logged, slots=slots, sticky=sticky))
    # `mode: tcp` services are the `streams` (their own port each, lbgen.config_tcp); the rest are routed by port,
    # host and path.
    http = [v for v in views if v.config.mode != "tcp"]
    streams = tuple(v for v in views if v.config.mode == "tcp")
    ports = []
    tls_ports = {v.tls.config.listen for v in http if v.tls is not None}
    for port in sorted({v.config.listen for v in http} | tls_ports):
        if port in tls_ports:
            on_port = tuple(v for v in http if v.tls is not None and v.tls.config.listen == port)
        else:
            on_port = tuple(v for v in http if v.config.listen == port)
        default = next((v for v in on_port if not v.config.hosts), None)
        ports.append(port_view(port, on_port, default, port in tls_ports))
    active = {v.name: v.active_env for v in views}
    meta = {"generation": GENERATION_PLACEHOLDER, "v": 2}
    named = "".join(f" {v.name}={v.active_env or '-'}" for v in views[:STATUS_BODY_SERVICES])
    if len(views) > STATUS_BODY_SERVICES:
        named += f" (+{len(views) - STATUS_BODY_SERVICES} more services)"
    context = {
        "lbgen_version": __version__,
        "config": config,
        "proxy": config.proxy,
        "services": http,  # HTTP services
        "ports": ports,
        "meta_comment": "\n".join([META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":")),
                                    *pool_lines(views), *tls_lines(views, certs)]),
        "options": kind.render_options(proxy_version),
        "tls": bool(tls_ports),
        # nginx: some free text holds a `$`, which nginx_str writes as ${lbgen_dollar}
        "needs_dollar": any(v.maintenance is not None and "$" in v.maintenance.message for v in http),
        # nginx: the server_names_hash sizes the host names need
        **kind.host_settings(h for v in http for h in v.config.hosts),
        "status_body": "lbgen generation=" + GENERATION_PLACEHOLDER + named,
        "generation": GENERATION_PLACEHOLDER,
        # `mode: tcp` services: nginx's stream {} (in the main-context file), HAProxy's tcp frontends/backends
        "streams": streams,
    }
    env = make_environment(config.templates_dir)
    text = render_template(env, kind.template_name, context)
    main = render_template(env, kind.main_template_name, context) if kind.main_template_name else None
    # One generation for both files: a change to either is a new generation, served and verified as one.
    digest = hashlib.sha256(text.encode())
    if main is not None:
        digest.update(b"\0" + main.encode())
    generation = digest.hexdigest()[:12]
    return Rendered(text=text.replace(GENERATION_PLACEHOLDER, generation), generation=generation,
                    active=active, warnings=tuple(warnings), files=files,
                    main=main.replace(GENERATION_PLACEHOLDER, generation) if main is not None else None)


def port_view(port: int, services: tuple[ServiceView, ...], default: ServiceView | None, tls: bool) -> PortView:
    """A port with its host tables (lbgen.config_routes) turned into views the templates iterate."""
    by_name = {v.name: v for v in services}
    tables = host_tables([v.config for v in services])
    paths = sorted({r.path for t in tables for r in t.routes if r.path != "/"}, key=lambda p: (-len(p), p))
    acls = {p: f"lbgen_path_{i}" for i, p in enumerate(paths, start=1)}

    def view(table: HostTable) -> TableView:
        return TableView(table.hosts, tuple(RouteView(r.path, by_name[r.service], acls.get(r.path, ""))
                                            for r in table.routes),
                         by_name[table.owner] if table.owner else None)

    return PortView(port=port, services=services, default=default, tls=tls,
                    tables=tuple(view(t) for t in tables), grouped=tuple(view(t) for t in grouped(tables)),
                    path_acls=tuple((acls[p], p) for p in paths))


def _uncovered(name: str, service: ServiceConfig, pair: CertPair | None) -> list[str]:
    """A warning per host name the service's certificate does not cover (clients would refuse it)."""
    if pair is None or service.tls is None:
        return []
    missing = [h for h in service.hosts if not pair.info.covers(h)]
    if not missing:
        return []
    return [f"service {name}: certificate {service.tls.cert} does not cover {', '.join(missing)} "
            f"(it names {', '.join(pair.info.names) or 'nothing'})"]
