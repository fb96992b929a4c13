"""nginx as a proxy kind: lbgen's file is one conf.d file validated through the whole config (`nginx -t`),
reloaded by HUP to the master or `nginx -s reload`, no backup servers with hashing algorithms, and the
server_names_hash_bucket_size long host names need.
Imports lbgen.proxies.base, lbgen.errors and lbgen.engine only."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from lbgen.engine import ROOT, ContainerInfo, Engine, ExecResult
from lbgen.errors import ReloadFailed
from lbgen.proxies.base import INPLACE, ConfigDump, ProxyKind, first_error

if TYPE_CHECKING:
    from lbgen.model import Backend, Pool

# Algorithms that nginx forbids `backup` servers with.
NO_BACKUP_ALGORITHMS = ("ip_hash", "hash", "random")
# nginx's default server_names_hash_bucket_size: the CPU's cache line, 64 bytes on x86-64 and arm64.
DEFAULT_SERVER_NAMES_BUCKET = 64


def server_names_hash_bucket_size(hosts: Iterable[str]) -> int | None:
    """The `server_names_hash_bucket_size` these server names need, or None when nginx's default holds them.

    nginx (ngx_hash_init) stores a name in sizeof(void *) + align(len + 2, sizeof(void *)) bytes and needs
    one more pointer per bucket, so the default 64 holds exact names up to 46 characters; a longer one fails
    `nginx -t` ("could not build server_names_hash"). A wildcard (`*.example.com`) is hashed label by label,
    so its longest label counts. The answer is the next power of two that holds the longest name: 512 at
    most, as lbgen.grammar.host caps a name at 253 characters and a label at 63."""
    longest = max((max(map(len, h[2:].split("."))) if h.startswith("*.") else len(h) for h in hosts), default=0)
    need = 8 + (longest + 2 + 7) // 8 * 8 + 8
    size = DEFAULT_SERVER_NAMES_BUCKET
    while size < need:
        size *= 2
    return size if size > DEFAULT_SERVER_NAMES_BUCKET else None


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
