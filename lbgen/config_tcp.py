"""TCP services (`services.NAME.mode: tcp`): which lbgen.yaml keys and algorithms such a service may use, and
that it has its `listen` port to itself. A TCP service is proxied byte for byte (HAProxy `mode tcp`, nginx
`stream {}`) and checked by a TCP connect; everything about requests (hosts, paths, TLS, HTTP checks) is
refused on it, naming the key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from lbgen import grammar

if TYPE_CHECKING:
    from lbgen.config import ServiceConfig
    from lbgen.errors import ConfigError

Fail = Callable[[str, str, object, object], "ConfigError"]

MODES = ("http", "tcp")
# Keys that describe HTTP requests; on a TCP service each is a config error naming it. The snippets stay:
# nginx_snippet lands in the service's stream server {} and haproxy_snippet in its tcp backend, where
# stream/tcp directives (proxy_buffer_size, `tcp-request content ...`) still mean something.
HTTP_ONLY_KEYS = ("hosts", "paths", "strip_prefix", "tls", "websocket_timeout")
HTTP_ONLY_HEALTH_KEYS = ("path", "expect_status", "host", "headers")
# round_robin, least_conn, source hashing (ip_hash, or hash on $remote_addr) and random make sense for
# connections; the other hash keys read the request.
TCP_HASH_KEYS = ("$remote_addr",)


def check_tcp_keys(path: str, data: Mapping[str, Any], fail: Fail) -> None:
    """Refuse HTTP-only keys on a `mode: tcp` service (`data` is its lbgen.yaml mapping)."""
    for key in HTTP_ONLY_KEYS:
        if key in data:
            raise fail(f"{path}.{key}", f"{key} is for HTTP services; this service has mode: tcp", data, key)
    health = data.get("health")
    if isinstance(health, Mapping):
        for key in HTTP_ONLY_HEALTH_KEYS:
            if key in health:
                raise fail(f"{path}.health.{key}", f"a mode: tcp service is checked by a TCP connect, which has "
                           f"no {key}; remove it", health, key)
    hash_key = data.get("hash_key")
    # (an invalid key is left to the grammar's own message)
    if isinstance(hash_key, str) and grammar.HASH_KEY_RE.fullmatch(hash_key) and hash_key not in TCP_HASH_KEYS:
        raise fail(f"{path}.hash_key", f"{hash_key} reads the HTTP request; a mode: tcp service can hash only "
                   f"on {', '.join(TCP_HASH_KEYS)} (or use algorithm: ip_hash)", data, "hash_key")


def check_tcp_ports(services: Mapping[str, ServiceConfig], raw: Mapping[str, object], fail: Fail) -> None:
    """A TCP service has its `listen` port to itself: no other service (HTTP, TLS or TCP) listens there."""
    for svc in services.values():
        if svc.mode != "tcp":
            continue
        for other in services.values():
            if other is svc:
                continue
            ports = {other.listen} | ({other.tls.listen} if other.tls is not None else set())
            if svc.listen in ports:
                what = "TCP" if other.mode == "tcp" else "HTTP"
                svc_raw = raw.get(svc.name)
                raise fail(f"services.{svc.name}.listen",
                           f"port {svc.listen} is also used by {what} service {other.name}; a mode: tcp service "
                           f"has its port to itself", svc_raw, "listen")


def tcp_need(names: Collection[str]) -> str:
    """How messages about nginx's main-context file name the TCP services that need it."""
    return f"TCP service{'s' if len(names) > 1 else ''} {', '.join(names)} (nginx stream {{}})"
