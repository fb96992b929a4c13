"""nginx as a proxy kind: lbgen's file is one conf.d file validated through the whole config (`nginx -t`),
reloaded by HUP to the master or `nginx -s reload`, no backup servers with hashing algorithms, and the
server_names_hash settings long host names and many names need.
Imports lbgen.proxies.base, lbgen.errors and lbgen.engine only."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

from lbgen.engine import ROOT, ContainerInfo, Engine, ExecResult
from lbgen.errors import ReloadFailed
from lbgen.proxies.base import INPLACE, ConfigDump, ProxyKind, first_error

if TYPE_CHECKING:
    from lbgen.model import Backend, Pool

# Algorithms that nginx forbids `backup` servers with.
NO_BACKUP_ALGORITHMS = ("ip_hash", "hash", "random")
# nginx's defaults: server_names_hash_bucket_size is the CPU's cache line (64 bytes on x86-64 and arm64),
# server_names_hash_max_size 512.
DEFAULT_SERVER_NAMES_BUCKET = 64
DEFAULT_SERVER_NAMES_MAX = 512
# Up to this many server names nginx's defaults build the names' hash. Measured with nginx 1.22 and random
# names of 7-46 characters on one port: 25 always built; 31 failed 4 times in 40; 75 nearly always failed
# ("could not build optimal server_names_hash", a warning at every test and reload).
FEW_SERVER_NAMES = 16


class ServerNamesHash(NamedTuple):
    """The server_names_hash settings a config's host names need; None where nginx's default holds them."""

    bucket_size: int | None
    max_size: int | None


def server_names_hash(hosts: Iterable[str]) -> ServerNamesHash:
    """The `server_names_hash_bucket_size` and `server_names_hash_max_size` these server names need.

    nginx (ngx_hash_init) stores a name in sizeof(void *) + align(len + 2, sizeof(void *)) bytes, a bucket
    holds bucket_size minus one pointer of them, and the hash is built at the first table size up to
    max_size where no bucket overflows. So the default bucket (64) holds one exact name of up to 46
    characters; a longer one fails `nginx -t` ("could not build server_names_hash"). A wildcard
    (`*.example.com`) is hashed label by label, so its longest label counts.

    Up to FEW_SERVER_NAMES names a bucket needs to hold one name; past that, four of the longest, with room
    for up to four table slots per name (the default server's `_` counted too), which leaves nginx many
    sizes that work (checked with `nginx -t` up to 10,000 random names). Bucket sizes are powers of two."""
    names = set(hosts)
    longest = max((_entry_size(h) for h in names), default=0)
    count = len(names) + 1
    many = count > FEW_SERVER_NAMES
    need = 8 + (4 if many else 1) * longest
    bucket = DEFAULT_SERVER_NAMES_BUCKET
    while bucket < need:
        bucket *= 2
    max_size = max(DEFAULT_SERVER_NAMES_MAX, 4 * count) if many else DEFAULT_SERVER_NAMES_MAX
    return ServerNamesHash(bucket if bucket > DEFAULT_SERVER_NAMES_BUCKET else None,
                           max_size if max_size > DEFAULT_SERVER_NAMES_MAX else None)


def _entry_size(host: str) -> int:
    """Bytes of one name in nginx's hash (a wildcard: of its longest label) on a 64-bit machine."""
    key = max(map(len, host[2:].split("."))) if host.startswith("*.") else len(host)
    return 8 + (key + 2 + 7) // 8 * 8


class Nginx(ProxyKind):
    name = "nginx"
    binary = "nginx"
    default_config_path = "/etc/nginx/conf.d/lbgen.conf"
    template_name = "nginx.conf.j2"
    # nginx's main context (worker_shutdown_timeout, `stream {}`): nginx.conf includes this file at its top
    # level (`include /etc/nginx/lbgen-main*.conf;`); conf.d files sit inside http {} and cannot reach it.
    default_main_config_path = "/etc/nginx/lbgen-main.conf"
    main_template_name = "nginx-main.conf.j2"
    # A conf.d file is only valid inside nginx.conf's http {}, so nginx checks it in place.
    validate_mode = INPLACE
    validator = ("nginx", "-t", "-q")
    reload_signal = "HUP"
    version_re = re.compile(r"nginx/([0-9]+(?:\.[0-9]+)*)")

    def version(self, engine: Engine, container: str) -> tuple[int, ...] | None:
        return self.parse_version(engine.exec(container, ["nginx", "-v"]).output)

    def render_options(self, version: tuple[int, ...] | None) -> Mapping[str, Any]:
        """nginx 1.25.1 made HTTP/2 a server directive (`http2 on`) and deprecated `listen ... http2`, which
        older versions need; an unknown version gets the old syntax, which every version accepts."""
        return {"http2_directive": version is not None and version >= (1, 25, 1)}

    def host_settings(self, hosts: Iterable[str]) -> Mapping[str, Any]:
        """The server_names_hash sizes the names need (server_names_hash); None where nginx's default holds."""
        sizes = server_names_hash(hosts)
        return {"server_names_hash_bucket_size": sizes.bucket_size, "server_names_hash_max_size": sizes.max_size}

    def include_directive(self, path: str) -> str:
        """The line nginx.conf needs, at its top level, to read `path`: a glob, so that nginx also starts
        before lbgen has written the file (an include of a glob matching nothing is no error)."""
        glob = path[:-5] + "*.conf" if path.endswith(".conf") else f"{path[:-1]}[{path[-1]}]"
        return f"include {glob};"

    def config_dump(self, engine: Engine, info: ContainerInfo) -> ConfigDump:
        """`nginx -T`: the whole config nginx reads, file by file (as root: nginx.conf may be 0600)."""
        result = engine.exec(info.name, ["nginx", "-T", "-q"], user=ROOT)
        if result.exit_code != 0:
            return ConfigDump({}, first_error(result.output))
        return ConfigDump.parse(result.output)

    def version_output(self, engine: Engine, info: ContainerInfo) -> ExecResult:
        return engine.exec(info.name, ["nginx", "-v"], user=ROOT)

    def reload(self, engine: Engine, info: ContainerInfo) -> None:
        if self.master_is_pid1(info.command):
            engine.signal(info.name, self.reload_signal)
            return
        # PID 1 is an init or a shell: let nginx find its master through its pid file.
        result = engine.exec(info.name, ["nginx", "-s", "reload"])
        if result.exit_code != 0:
            raise ReloadFailed(f"reload of nginx in {info.name} failed: {first_error(result.output)}")

    def servers(self, algorithm: str, pool: Pool) -> tuple[tuple[Backend, ...], tuple[str, ...]]:
        if algorithm in NO_BACKUP_ALGORITHMS and pool.backups:
            return pool.primary, (f"service {pool.service}: nginx cannot use backup servers with {algorithm}; "
                                  f"left out {', '.join(b.name for b in pool.backups)}",)
        return super().servers(algorithm, pool)


NGINX = Nginx()
