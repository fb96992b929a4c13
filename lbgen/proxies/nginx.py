"""nginx as a proxy kind: lbgen's file is one conf.d file validated through the whole config (`nginx -t`),
reloaded by HUP to the master or `nginx -s reload`, and no backup servers with hashing algorithms.
Imports lbgen.proxies.base, lbgen.errors and lbgen.engine only."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

from lbgen.engine import ROOT, ContainerInfo, Engine, ExecResult
from lbgen.errors import ReloadFailed
from lbgen.proxies.base import INPLACE, ProxyKind, first_error

if TYPE_CHECKING:
    from lbgen.model import Backend, Pool

# Algorithms that nginx forbids `backup` servers with.
NO_BACKUP_ALGORITHMS = ("ip_hash", "hash", "random")


class Nginx(ProxyKind):
    name = "nginx"
    binary = "nginx"
    default_config_path = "/etc/nginx/conf.d/lbgen.conf"
    template_name = "nginx.conf.j2"
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
