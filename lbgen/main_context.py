"""nginx's main-context file (proxy.main_config_path): what in lbgen.yaml needs it (drain_timeout, TCP
services' `stream {}`), refusing a TCP service nginx would not serve, and the once-per-run warning when
nginx.conf does not include the file or it cannot be written."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from lbgen.config import Config
from lbgen.config_tcp import tcp_need
from lbgen.errors import ConfigError
from lbgen.events import EventSink, warning

if TYPE_CHECKING:
    from lbgen.proxies.driver import Proxy


class MainContext:
    def __init__(self, config: Config, proxy: Callable[[], Proxy], log: EventSink) -> None:
        self.config = config
        self._proxy = proxy  # the proxy is found lazily: asked only when something needs the file
        self.log = log
        self._warned: set[str] = set()

    def needed(self) -> tuple[str, ...]:
        """What in lbgen.yaml needs nginx's main-context file (empty: nothing, and then nothing is asked of
        nginx.conf): proxy.drain_timeout set, and TCP services."""
        proxy = self.config.proxy
        needs = []
        if proxy.main_config_path is not None and proxy.drain_timeout_set:
            needs.append(f"proxy.drain_timeout ({proxy.drain_timeout:g}s: nginx worker_shutdown_timeout)")
        if proxy.main_config_path is not None and self.tcp_services():
            needs.append(tcp_need(self.tcp_services()))
        return tuple(needs)

    def tcp_services(self) -> tuple[str, ...]:
        return tuple(name for name, svc in self.config.services.items() if svc.mode == "tcp")

    def require(self, main: str | None) -> None:
        """nginx serves TCP services only from lbgen's main-context file (its `stream {}`): refuse, before
        anything changes, to install a config whose TCP services nginx would not serve, because the file
        cannot be written (`main` None) or nginx.conf does not include it. Asks nginx (`nginx -T`) only
        when there are TCP services; an answer it cannot give is left to `nginx -t`."""
        tcp = self.tcp_services()
        path = self.config.proxy.main_config_path
        if not tcp or path is None:
            return
        if main is None:
            raise ConfigError(f"{tcp_need(tcp)} needs lbgen's main-context file {path}, which is on a read-only "
                              f"mount or root filesystem in {self._proxy().name}; set proxy.main_config_path to a "
                              f"writable place outside conf.d; nothing was changed")
        if self._proxy().main_included() is False:
            raise ConfigError(f"{tcp_need(tcp)} is served from {path}, and nginx.conf in {self._proxy().name} does "
                              f"not include it. Add `{self._proxy().kind.include_directive(path)}` at the top level "
                              f"of nginx.conf, after any load_module line (README: \"TCP services\"); nothing "
                              f"was changed")
        self._warned.add("main-context")  # it is included: nothing to warn about in this run

    def check(self, writable: bool) -> None:
        """Warn (once per run) when lbgen.yaml needs the main-context file and nginx does not read it: not
        included from nginx.conf, or not writable. Asks nginx (`nginx -T`) only when something needs it."""
        needs = self.needed()
        if not needs or "main-context" in self._warned:
            return
        self._warned.add("main-context")
        path = self.config.proxy.main_config_path
        if not writable:
            self.log(warning(f"{', '.join(needs)} needs lbgen's main-context file {path}, which is on a read-only "
                             f"mount or root filesystem in {self._proxy().name}; it is not applied. Set "
                             f"proxy.main_config_path to a writable place outside conf.d"))
            return
        if self._proxy().main_included() is False:
            self.log(warning(main_not_included(self._proxy().kind.include_directive(path or ""), path or "", needs)))


def main_not_included(directive: str, path: str, needs: tuple[str, ...]) -> str:
    """What to say when nginx does not read lbgen's main-context file although lbgen.yaml needs it."""
    return (f"{', '.join(needs)} needs nginx to read {path}, and its nginx.conf does not include it: "
            f"old nginx workers keep their connections after a reload until those close. Add "
            f"`{directive}` at the top level of nginx.conf, outside http {{}} (README: \"nginx's main context\")")
