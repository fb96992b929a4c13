"""lbgen.yaml -> frozen dataclasses. Unknown keys, wrong types and bad values are ConfigErrors naming the
key path and, where YAML gives one, the line."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from lbgen import config_values as values
from lbgen import grammar
from lbgen.config_values import parse_duration
from lbgen.config_routes import check_routes
from lbgen.config_tcp import MODES, check_tcp_keys, check_tcp_ports
from lbgen.errors import ConfigError
from lbgen.proxies import KINDS, kind_named
from lbgen.proxies.base import ProxyKind
from lbgen.timings import bulk
from lbgen.yamlfile import LineDict, LineList, load_yaml

# `checks:` values (lbgen.probe uses them): where health checks and the proxy's status listener are reached from.
CHECK_MODES = ("auto", "engine", "direct")

@dataclass(frozen=True)
class HealthConfig:
    path: str = "/health"
    expect_status: str = "200"
    interval: float = 1.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    # The Host header of lbgen's checks and HAProxy's: `health.host`, else the service's first exact
    # host name (apps that check Host, such as Django's ALLOWED_HOSTS, answer 400 to any other), else
    # None (lbgen sends address:port, HAProxy `localhost`).
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # `health.headers`, in the order written
    mode: str = "http"  # the service's mode: `tcp` checks are a TCP connect (path, status, host unused)

    def request_headers(self) -> dict[str, str]:
        """The headers a check sends besides the defaults: Host (when known), then `health.headers`."""
        out = {"Host": self.host} if self.host else {}
        out.update(self.headers)
        return out

    def status_ok(self, status: int) -> bool:
        if self.expect_status.endswith("xx"):
            return str(status)[:1] == self.expect_status[0]
        return status == int(self.expect_status)


@dataclass(frozen=True)
class TlsConfig:
    """`services.NAME.tls`: where the service terminates TLS, with which certificate (see README, TLS)."""

    cert: str  # as written in lbgen.yaml (relative to it), for messages
    key: str
    cert_file: Path  # resolved against lbgen.yaml's directory
    key_file: Path
    listen: int = 443
    redirect: bool = True  # plain-HTTP requests get 308 to https://<host><uri>
    hsts: int = 0  # Strict-Transport-Security max-age; 0 = no header
    warn_days: int = 14  # `lbgen health`: WARNING when the certificate has fewer days left


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    listen: int = 80
    mode: str = "http"  # `tcp`: proxied byte for byte on its own port, checked by a TCP connect (config_tcp)
    hosts: tuple[str, ...] = ()
    algorithm: str = "round_robin"
    hash_key: str | None = None
    default_env: str | None = None
    health: HealthConfig = field(default_factory=HealthConfig)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 2
    # Idle limit of an upgraded (WebSocket) connection, in both directions; replaces read_timeout once
    # the connection is upgraded (HAProxy `timeout tunnel`; nginx proxy_read/send_timeout of the
    # upgrade location).
    websocket_timeout: float = 3600.0
    tls: TlsConfig | None = None
    # Path prefixes this service answers on its port (and hosts); `/` is everything (lbgen.config_routes).
    paths: tuple[str, ...] = ("/",)
    strip_prefix: bool = False  # the matched prefix is removed before the request is proxied
    # Lines from lbgen.yaml (never labels) placed inside the service's locations (nginx) or backend (HAProxy).
    nginx_snippet: str | None = None
    haproxy_snippet: str | None = None


@dataclass(frozen=True)
class ProxyConfig:
    kind: str
    container: str
    config_path: str
    status_port: int = 9180
    state_dir: str = "/var/lib/lbgen"
    # How long an old worker keeps the connections it holds after a reload: HAProxy `hard-stop-after`;
    # nginx `worker_shutdown_timeout`, in lbgen's main-context file (main_config_path), which nginx reads
    # only when its nginx.conf includes it.
    drain_timeout: float = 300.0
    drain_timeout_set: bool = False  # written in lbgen.yaml (on nginx it then needs the main-context file)
    # nginx only: lbgen's file for nginx's main context (worker_shutdown_timeout; TCP `stream {}` later),
    # included once from the top level of nginx.conf. None for HAProxy (lbgen owns its whole config).
    main_config_path: str | None = None
    # The engine that runs the proxy container (exec, files, the lock), when it is not the engine lbgen
    # discovers on (e.g. a Swarm manager); a DOCKER_HOST-style URL. None: the same engine.
    docker_host: str | None = None
    # HAProxy only: spare server slots per backend, filled through the runtime API when a backend joins
    # (0: no runtime API, every change reloads), and the loopback port of the admin socket lbgen uses.
    spare_servers: int = 0
    runtime_port: int = 9181


@dataclass(frozen=True)
class Config:
    network: str  # the first of `networks`
    proxy: ProxyConfig
    services: Mapping[str, ServiceConfig]
    label_prefix: str = "lbgen"
    templates_dir: Path | None = None
    source: str = "lbgen.yaml"
    # Where health checks and the status listener are reached from: auto (direct when the app network
    # answers from here, else through the engine), engine (from inside the proxy container), direct.
    checks: str = "auto"
    # `network:` as a list: a backend is routed on the first of these that it and the proxy share.
    networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.networks:
            object.__setattr__(self, "networks", (self.network,))

    def service(self, name: str | None) -> ServiceConfig:
        """The named service, or the only one when name is None."""
        from lbgen.errors import UsageError

        if name is None:
            if len(self.services) != 1:
                raise UsageError(f"{self.source} has {len(self.services)} services; name one with --service "
                                 f"({', '.join(self.services)})")
            return next(iter(self.services.values()))
        if name not in self.services:
            raise UsageError(f"no service {name!r} in {self.source} (services: {', '.join(self.services)})")
        return self.services[name]


def find_config_path(explicit: str | None) -> Path:
    """--config PATH, else $LBGEN_CONFIG, else ./lbgen.yaml."""
    return Path(explicit or os.environ.get("LBGEN_CONFIG") or "lbgen.yaml")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (give --config PATH or set LBGEN_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


@bulk()  # 1,000 services are 11,000 YAML nodes, and no cycle
def parse_config(text: str, source: str = "lbgen.yaml", base_dir: Path | None = None) -> Config:
    data = load_yaml(text, source)
    return _Parser(source, base_dir or Path.cwd()).config(data)


class _Parser:
    """Walks the YAML tree with the key path, so every error can say where it is."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, path: str, message: str, parent: Any = None, key: Any = None) -> ConfigError:
        line = None
        if isinstance(parent, LineDict):
            line = parent.lines.get(key, parent.line)
        elif isinstance(parent, LineList) and isinstance(key, int) and key < len(parent.lines):
            line = parent.lines[key]
        where = f"{self.source}:{line}" if line else self.source
        if not path.isprintable():  # a key with a newline or an escape sequence in it: keep the error one line
            path = path.encode("unicode_escape").decode("ascii")
        return ConfigError(f"{where}: {path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = (),
                parent: Any = None, key: Any = None) -> dict[str, Any]:
        if value is None and not required:
            return LineDict()
        if not isinstance(value, dict):
            raise self.fail(path or "(top level)", f"expected a mapping, got {values.kind_of(value)}", parent, key)
        for k in value:
            if k not in allowed:
                sub = f"{path}.{k}" if path else str(k)
                raise self.fail(sub, f"unknown key (expected one of: {', '.join(allowed)})", value, k)
        for k in required:
            if k not in value:
                raise self.fail(path or "(top level)", f"missing required key {k!r}", parent, key)
        return value

    def field(self, data: dict[str, Any], key: str, path: str, check: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in data:
            return default
        try:
            return check(data[key])
        except ValueError as e:
            raise self.fail(f"{path}.{key}" if path else key, str(e), data, key) from None

    def config(self, data: Any) -> Config:
        top = self.mapping(data, "", ("network", "label_prefix", "templates_dir", "checks", "proxy", "services"),
                           ("network", "proxy", "services"))
        networks = self.field(top, "network", "", values.networks)
        prefix = self.field(top, "label_prefix", "", grammar.label_prefix, "lbgen")
        templates_dir = self.templates_dir(top)
        checks = self.field(top, "checks", "", values.choice(CHECK_MODES), "auto")
        proxy = self.proxy(top["proxy"], top)
        services_raw = top["services"]
        if not isinstance(services_raw, dict) or not services_raw:
            raise self.fail("services", "expected a mapping of service names to settings, with at least one",
                            top, "services")
        services: dict[str, ServiceConfig] = {}
        for name, raw in services_raw.items():
            path = f"services.{name}"
            try:
                grammar.name(name)
            except ValueError as e:
                raise self.fail(path, str(e), services_raw, name) from None
            services[name] = self.service(name, raw, path, services_raw)
        check_tcp_ports(services, services_raw, self.fail)
        check_routes(services, proxy, services_raw, self.fail)
        return Config(
            network=networks[0],
            networks=networks,
            proxy=proxy,
            services=services,
            label_prefix=prefix,
            templates_dir=templates_dir,
            source=self.source,
            checks=checks,
        )

    def templates_dir(self, top: dict[str, Any]) -> Path | None:
        """`templates_dir`, relative to lbgen.yaml. It must exist: a typo there must not silently render
        the built-in templates instead of the user's own."""
        value = self.field(top, "templates_dir", "", values.string("a directory path"))
        if value is None:
            return None
        path: Path = self.base_dir / value
        if not os.path.isdir(path):
            what = "not a directory" if os.path.exists(path) else "no such directory"
            shown = str(path) if str(path).isprintable() else grammar._show(str(path))
            raise self.fail("templates_dir", f"{what}: {shown}", top, "templates_dir")
        return path

    def proxy(self, raw: Any, parent: dict[str, Any]) -> ProxyConfig:
        data = self.mapping(raw, "proxy", ("kind", "container", "config_path", "status_port", "state_dir",
                                             "drain_timeout", "docker_host", "main_config_path", "spare_servers",
                                             "runtime_port"),
                            ("kind", "container"), parent, "proxy")
        kind = self.field(data, "kind", "proxy", values.choice(tuple(KINDS)))
        return ProxyConfig(
            kind=kind,
            container=self.field(data, "container", "proxy", grammar.container_name),
            config_path=self.field(data, "config_path", "proxy", values.abs_path,
                                   kind_named(kind).default_config_path),
            status_port=self.field(data, "status_port", "proxy", grammar.port, 9180),
            state_dir=self.field(data, "state_dir", "proxy", values.abs_path, "/var/lib/lbgen"),
            drain_timeout=self.field(data, "drain_timeout", "proxy", parse_duration, 300.0),
            drain_timeout_set="drain_timeout" in data,
            docker_host=self.field(data, "docker_host", "proxy", values.docker_host),
            main_config_path=self.main_config_path(data, kind_named(kind)),
            spare_servers=self.runtime_field(data, kind, "spare_servers", values.int_range(0, 1000), 16),
            # 9181 by default, or 9182 where status_port took 9181
            runtime_port=self.runtime_field(data, kind, "runtime_port", grammar.port,
                                            9182 if data.get("status_port") == 9181 else 9181),
        )

    def runtime_field(self, data: dict[str, Any], kind: str, key: str, check: Callable[[Any], Any],
                      default: int) -> int:
        """proxy.spare_servers / proxy.runtime_port: HAProxy's runtime API; refused for another kind."""
        if kind != "haproxy":
            if key in data:
                raise self.fail(f"proxy.{key}", f"only HAProxy changes servers through a runtime API; {kind} "
                                f"reloads; remove the key", data, key)
            return 0 if key == "spare_servers" else default
        value: int = self.field(data, key, "proxy", check, default)
        if key == "runtime_port" and value == data.get("status_port", 9180):
            raise self.fail("proxy.runtime_port", f"{value} is proxy.status_port too; pick another port",
                            data, key)
        return value

    def main_config_path(self, data: dict[str, Any], kind: ProxyKind) -> str | None:
        """proxy.main_config_path: the kind's default, or the path given; refused for a kind without one."""
        if kind.default_main_config_path is None:
            if "main_config_path" in data:
                raise self.fail("proxy.main_config_path", f"{kind.name} has no main-context include (lbgen "
                                f"writes its whole config); remove the key", data, "main_config_path")
            return None
        path: str = self.field(data, "main_config_path", "proxy", values.abs_path, kind.default_main_config_path)
        config_path = data.get("config_path", kind.default_config_path)
        if path == config_path or path.rsplit("/", 1)[0] == str(config_path).rsplit("/", 1)[0]:
            raise self.fail("proxy.main_config_path", f"{path} is in the directory of config_path, which nginx "
                            f"includes inside http {{}}; the main-context file must be outside it (default "
                            f"{kind.default_main_config_path})", data, "main_config_path")
        return path

    def service(self, name: str, raw: Any, path: str, parent: dict[str, Any]) -> ServiceConfig:
        data = self.mapping(raw, path, ("listen", "mode", "hosts", "algorithm", "hash_key", "default_env", "health",
                                        "connect_timeout", "read_timeout", "websocket_timeout", "retries",
                                        "tls", "paths", "strip_prefix", "nginx_snippet", "haproxy_snippet"),
                            (), parent, name)
        mode = self.field(data, "mode", path, values.choice(MODES), "http")
        if mode == "tcp":
            check_tcp_keys(path, data, self.fail)
        algorithm = self.field(data, "algorithm", path, values.choice(grammar.ALGORITHMS), "round_robin")
        hash_key = self.field(data, "hash_key", path, grammar.hash_key)
        if algorithm == "hash" and hash_key is None:
            raise self.fail(f"{path}.algorithm", "algorithm hash needs hash_key (e.g. $request_uri)", data, "algorithm")
        if algorithm != "hash" and hash_key is not None:
            raise self.fail(f"{path}.hash_key", "hash_key is only for algorithm: hash", data, "hash_key")
        hosts = self.field(data, "hosts", path, values.distinct(grammar.host, "host"), ())
        if data.get("strip_prefix") is True and "paths" not in data:
            raise self.fail(f"{path}.strip_prefix", "strip_prefix needs paths (there is no prefix to strip from /)",
                            data, "strip_prefix")
        return ServiceConfig(
            name=name,
            listen=self.field(data, "listen", path, values.int_port, 80),
            mode=mode,
            hosts=tuple(hosts),
            algorithm=algorithm,
            hash_key=hash_key,
            default_env=self.field(data, "default_env", path, grammar.name),
            health=self.health(data.get("health"), f"{path}.health", data, hosts, mode),
            connect_timeout=self.field(data, "connect_timeout", path, parse_duration, 5.0),
            read_timeout=self.field(data, "read_timeout", path, parse_duration, 60.0),
            websocket_timeout=self.field(data, "websocket_timeout", path, parse_duration, 3600.0),
            retries=self.field(data, "retries", path, values.int_range(0, 10), 2),
            tls=self.tls(data.get("tls"), f"{path}.tls", data) if "tls" in data else None,
            paths=self.field(data, "paths", path, values.paths, ("/",)),
            strip_prefix=self.field(data, "strip_prefix", path, values.boolean, False),
            nginx_snippet=self.field(data, "nginx_snippet", path, lambda v: grammar.snippet(v, "nginx")),
            haproxy_snippet=self.field(data, "haproxy_snippet", path, lambda v: grammar.snippet(v, "haproxy")),
        )

    def tls(self, raw: Any, path: str, parent: dict[str, Any]) -> TlsConfig:
        data = self.mapping(raw, path, ("listen", "cert", "key", "redirect", "hsts", "warn_days"),
                            ("cert", "key"), parent, "tls")
        cert = self.field(data, "cert", path, values.string("a file path"))
        key = self.field(data, "key", path, values.string("a file path"))
        if cert == key:
            raise self.fail(f"{path}.key", "the key must be a file of its own, not the certificate file", data, "key")
        return TlsConfig(
            cert=cert, key=key, cert_file=self.base_dir / cert, key_file=self.base_dir / key,
            listen=self.field(data, "listen", path, values.int_port, 443),
            redirect=self.field(data, "redirect", path, values.boolean, True),
            hsts=self.field(data, "hsts", path, values.int_range(0, 315360000), 0),
            warn_days=self.field(data, "warn_days", path, values.int_range(1, 365), 14),
        )

    def health(self, raw: Any, path: str, parent: dict[str, Any], hosts: list[str], mode: str = "http") -> HealthConfig:
        data = self.mapping(raw, path, ("path", "expect_status", "interval", "timeout", "rise", "fall", "host",
                                        "headers"), (), parent, "health")
        exact = next((h for h in hosts if not h.startswith("*.")), None)
        return HealthConfig(
            path=self.field(data, "path", path, grammar.http_path, "/health"),
            expect_status=self.field(data, "expect_status", path, grammar.expect_status, "200"),
            interval=self.field(data, "interval", path, parse_duration, 1.0),
            timeout=self.field(data, "timeout", path, parse_duration, 2.0),
            rise=self.field(data, "rise", path, values.int_range(1, 100), 2),
            fall=self.field(data, "fall", path, values.int_range(1, 100), 3),
            host=self.field(data, "host", path, grammar.host_header, exact),
            headers=self.health_headers(data, path),
            mode=mode,
        )

    def health_headers(self, data: dict[str, Any], path: str) -> tuple[tuple[str, str], ...]:
        if "headers" not in data:
            return ()
        raw = data["headers"]
        if not isinstance(raw, dict):
            raise self.fail(f"{path}.headers", f"expected a mapping of header names to values, got {values.kind_of(raw)}",
                            data, "headers")
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, value in raw.items():
            sub = f"{path}.headers.{name}"
            try:
                checked = grammar.header_name(name)
                if checked.lower() in seen:
                    raise ValueError(f"{grammar._show(name)} is given twice")
                seen.add(checked.lower())
                out.append((checked, grammar.header_value(value)))
            except ValueError as e:
                raise self.fail(sub, str(e), raw, name) from None
        return tuple(out)
