"""HAProxy as a proxy kind: lbgen's file is the whole config, checked on its own (`haproxy -c -f`) before
the swap; reloads only in master-worker mode, by USR2 to the master as PID 1; server slots change through the runtime
API (lbgen.proxies.haproxy_runtime) without a reload.
Imports lbgen.proxies.base, lbgen.proxies.haproxy_runtime, lbgen.errors and lbgen.engine only."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping, Sequence

from lbgen.engine import ROOT, ContainerInfo, Engine, ExecResult
from lbgen.errors import ProxyError
from lbgen.proxies import haproxy_runtime
from lbgen.proxies.base import CANDIDATE, PreviousSlot, ProxyKind, Slot
from lbgen.proxies.haproxy_runtime import RuntimeApi, RuntimePlan

if TYPE_CHECKING:
    from lbgen.model import Backend


class HAProxy(ProxyKind):
    name = "haproxy"
    binary = "haproxy"
    default_config_path = "/usr/local/etc/haproxy/haproxy.cfg"
    template_name = "haproxy.cfg.j2"
    validate_mode = CANDIDATE
    # No -q: HAProxy's quiet mode hides the ALERT lines that say why a config is invalid.
    validator = ("haproxy", "-c", "-f")
    reload_signal = "USR2"
    version_re = re.compile(r"HA-?Proxy version ([0-9]+(?:\.[0-9]+)*)")

    def version(self, engine: Engine, container: str) -> tuple[int, ...] | None:
        return self.parse_version(engine.exec(container, ["haproxy", "-v"]).output)

    def preflight(self, info: ContainerInfo, config_path: str, live: str | None) -> None:
        """Only a master-worker HAProxy reloads without dropping connections; lbgen never restarts one."""
        if self.master_worker(info.command, config_path, live):
            return
        raise ProxyError(
            f"HAProxy in container {info.name} is not running in master-worker mode, so it cannot reload "
            f"seamlessly; lbgen will not restart it. Start it with `haproxy -W` (or `master-worker` in "
            f"its global section); nothing was changed"
        )

    @staticmethod
    def master_worker(command: tuple[str, ...], config_path: str, live: str | None) -> bool:
        """Whether the HAProxy PID 1 runs as `command` is in master-worker mode: -W/-Ws, the official
        image's entrypoint (it adds -W -db), or `master-worker` in the file lbgen manages, when HAProxy was
        started with that file."""
        if any(arg in ("-W", "-Ws") for arg in command):
            return True
        if command and command[0].endswith("docker-entrypoint.sh") and "haproxy" in command[1:2]:
            return True
        started_with_our_file = config_path in command
        return bool(started_with_our_file and live
                    and any(line.strip() == "master-worker" for line in live.splitlines()))

    def version_output(self, engine: Engine, info: ContainerInfo) -> ExecResult:
        return engine.exec(info.name, ["haproxy", "-v"], user=ROOT)

    def reload(self, engine: Engine, info: ContainerInfo) -> None:
        if not self.master_is_pid1(info.command):
            raise ProxyError(f"PID 1 of proxy container {info.name} is not the HAProxy master "
                             f"({' '.join(info.command[:3])}); lbgen reloads HAProxy by signalling its master")
        engine.signal(info.name, self.reload_signal)

    def layout(self, live: str | None) -> Mapping[str, tuple[PreviousSlot, ...]] | None:
        return haproxy_runtime.layout(live)

    def slots(self, servers: Sequence[Backend], previous: Sequence[PreviousSlot] | None,
              spares: int) -> tuple[Slot, ...] | None:
        return haproxy_runtime.assign_slots(servers, previous, spares)

    def runtime(self, engine: Engine, container: str, text: str | None) -> RuntimeApi | None:
        return haproxy_runtime.runtime_for(engine, container, text)

    def runtime_plan(self, live: str | None, new: str) -> RuntimePlan | None:
        return haproxy_runtime.plan(live, new)


HAPROXY = HAProxy()
