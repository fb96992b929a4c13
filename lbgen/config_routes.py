"""Routing by port, host and path: the checks lbgen.yaml's services must pass together (conflicts, shared
certificates, the status port), and the route table both templates render from, so that one request reaches
the same service whichever proxy runs.

The rule: a request matches a service when its Host matches one of the service's `hosts` (any host when it
has none) and its path starts with one of its `paths` on whole segments (`/api` matches `/api` and
`/api/x`, not `/apiary`; no `paths` is `/`). Among the matches the longest path wins; on equal paths the
more specific host wins (an exact name, then the longer wildcard, then no host).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from lbgen.config import ProxyConfig, ServiceConfig, TlsConfig
    from lbgen.errors import ConfigError

Fail = Callable[[str, str, object, object], "ConfigError"]


@dataclass(frozen=True)
class Route:
    path: str  # `/` or `/seg/...`
    service: str


@dataclass(frozen=True)
class HostTable:
    """What requests for some host names on one port are routed to: `routes` longest path first.
    `hosts` is () for the default (any other host). `owner` names the service that lists these host
    names (its TLS certificate is theirs); None for a default that no host-less service owns."""

    hosts: tuple[str, ...]
    routes: tuple[Route, ...]
    owner: str | None

    @property
    def has_root(self) -> bool:
        return any(r.path == "/" for r in self.routes)


def covers(pattern: str, host: str) -> bool:
    """Whether the host pattern of a service ("" = any host) matches every request for `host` (an exact
    name, a wildcard, or "" for the default)."""
    if not pattern:
        return True
    if not host:
        return False
    return pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:]))


def specificity(pattern: str) -> tuple[int, int]:
    if not pattern:
        return (0, 0)
    return (1, len(pattern)) if pattern.startswith("*.") else (2, len(pattern))


def host_tables(services: Sequence[ServiceConfig]) -> list[HostTable]:
    """One table per host pattern named on the port, in the order a first-match proxy must try them:
    exact names (config order), wildcards longest first, then the default.

    For each table only the services whose patterns cover its host are looked at (the host itself, the
    wildcards above it, the default), in config order: linear in the host names, not their square."""
    by_pattern: dict[str, list[tuple[int, ServiceConfig, str]]] = {}
    for i, svc in enumerate(services):
        for pattern in svc.hosts or ("",):
            by_pattern.setdefault(pattern, []).append((i, svc, pattern))
    patterns = [p for p in by_pattern if p]
    exact = [h for h in patterns if not h.startswith("*.")]
    wild = sorted((h for h in patterns if h.startswith("*.")), key=len, reverse=True)
    tables = []
    for key in [*exact, *wild, ""]:
        candidates = list(by_pattern.get(key, ())) if key else []
        candidates += [c for w in wild if w != key and covers(w, key) for c in by_pattern[w]]
        candidates += by_pattern.get("", ())
        candidates.sort(key=lambda c: c[0])  # config order (stable: a service's own patterns stay together)
        best: dict[str, tuple[tuple[int, int], str]] = {}
        owner = None
        for _, svc, pattern in candidates:
            if pattern == key and owner is None:
                owner = svc.name
            for path in svc.paths:
                current = best.get(path)
                if current is None or specificity(pattern) > current[0]:
                    best[path] = (specificity(pattern), svc.name)
        routes = tuple(Route(p, s) for p, (_, s) in sorted(best.items(), key=lambda i: (-len(i[0]), i[0])))
        tables.append(HostTable((key,) if key else (), routes, owner))
    return tables


def grouped(tables: Iterable[HostTable]) -> list[HostTable]:
    """Host tables with the same routes and owner merged into one (nginx: one server {} with several
    names; it orders names itself). The default stays on its own, last."""
    out: list[HostTable] = []
    where: dict[tuple[tuple[Route, ...], str | None], int] = {}
    default = None
    for table in tables:
        if not table.hosts:
            default = table
            continue
        same = where.get((table.routes, table.owner))
        if same is None:
            where[(table.routes, table.owner)] = len(out)
            out.append(table)
        else:
            out[same] = HostTable(out[same].hosts + table.hosts, table.routes, table.owner)
    return out + ([default] if default else [])


def strip_regex(paths: Sequence[str]) -> str:
    """The regex whose third group is what follows the matched prefix (`/api/x` -> `x`), for nginx's
    rewrite and HAProxy's replace-path alike; longest prefix first, `.` as `[.]` (no backslashes)."""
    ordered = sorted((p for p in paths if p != "/"), key=len, reverse=True)
    return "^(" + "|".join(p.replace(".", "[.]") for p in ordered) + ")(/(.*))?$"


def check_routes(services: Mapping[str, ServiceConfig], proxy: ProxyConfig, raw: Mapping[str, object],
                 fail: Fail) -> None:
    """A port is plain HTTP or TLS for all its services; no two services claim the same port, host and
    path; one host name on a TLS port has one certificate (services splitting it by path share it)."""
    seen: dict[tuple[int, str, str], str] = {}
    plain = {svc.listen: svc.name for svc in services.values()}
    certs: dict[tuple[int, str], tuple[str, TlsConfig]] = {}
    for svc in services.values():
        svc_raw = raw.get(svc.name)
        listens = [(svc.listen, f"services.{svc.name}.listen", svc_raw, "listen")]
        if svc.tls is not None:
            tls_raw = svc_raw.get("tls") if isinstance(svc_raw, dict) else None
            listens.append((svc.tls.listen, f"services.{svc.name}.tls.listen", tls_raw, "listen"))
            if svc.tls.listen in plain:
                raise fail(f"services.{svc.name}.tls.listen",
                           f"port {svc.tls.listen} serves plain HTTP (service {plain[svc.tls.listen]}); "
                           f"a port is either plain HTTP or TLS", tls_raw, "listen")
        for port, where, parent, key in listens:
            if port == proxy.status_port:
                raise fail(where, f"port {port} is proxy.status_port, which lbgen keeps for itself", parent, key)
            if proxy.spare_servers and port == proxy.runtime_port:
                raise fail(where, f"port {port} is proxy.runtime_port (HAProxy's admin socket on loopback), "
                           f"which lbgen keeps for itself", parent, key)
            for host in svc.hosts or ("",):
                if svc.tls is not None and port == svc.tls.listen:
                    _check_cert(svc, port, host, certs, svc_raw, fail)
                for path in svc.paths:
                    other = seen.setdefault((port, host, path), svc.name)
                    if other != svc.name:
                        what = f"host {host}" if host else "no hosts (the default server)"
                        explicit = isinstance(svc_raw, dict) and "paths" in svc_raw
                        on_path = f" and path {path}" if explicit else ""
                        raise fail(f"services.{svc.name}.{'paths' if explicit else 'hosts'}",
                                   f"port {port} with {what}{on_path} is already routed to service {other}",
                                   svc_raw, "paths" if explicit else ("hosts" if host else "listen"))


def _check_cert(svc: ServiceConfig, port: int, host: str, certs: dict[tuple[int, str], tuple[str, TlsConfig]],
                svc_raw: object, fail: Fail) -> None:
    assert svc.tls is not None
    other = certs.setdefault((port, host), (svc.name, svc.tls))
    if (other[1].cert_file, other[1].key_file) != (svc.tls.cert_file, svc.tls.key_file):
        what = f"host {host}" if host else "the default certificate (no hosts)"
        raise fail(f"services.{svc.name}.tls.cert",
                   f"{what} on TLS port {port} has certificate {other[1].cert} in service {other[0]}; one host "
                   f"name has one certificate (services that split it by path share it)",
                   svc_raw.get("tls") if isinstance(svc_raw, dict) else None, "cert")
