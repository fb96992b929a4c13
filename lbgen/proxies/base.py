"""What a proxy kind is: `ProxyKind` holds everything that differs between nginx, HAProxy, ... (config
path, template, validator, reload, preflight rules, render rules); config.py, render.py and the driver ask it.

Imports only lbgen.engine and the standard library (lbgen.model for type hints only), so that config.py
can look kinds up without importing the driver, which sits above config.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lbgen.engine import ContainerInfo, Engine, ExecResult

if TYPE_CHECKING:
    from lbgen.model import Backend, Pool

# How the driver's install script validates (see lbgen.proxies.driver.INSTALL_SCRIPT): CANDIDATE checks
# the new file on its own before the swap; INPLACE swaps first, checks the whole proxy config, swaps back.
CANDIDATE = "candidate"
INPLACE = "inplace"


class ProxyKind:
    """One kind of proxy. Subclasses set the attributes and override the rules that differ."""

    name: str  # as written in lbgen.yaml's proxy.kind
    binary: str  # the proxy's executable, as PID 1 names it when it is the master process
    default_config_path: str  # where lbgen's file goes in the proxy container unless proxy.config_path says
    template_name: str  # the Jinja2 template that renders this kind's config
    validate_mode: str  # CANDIDATE or INPLACE
    validator: tuple[str, ...]  # argv of the proxy's own config check (CANDIDATE: the file is appended)
    reload_signal: str  # what the master process reloads on
    version_re: re.Pattern[str]  # finds the version number in what version() runs

    def version(self, engine: Engine, container: str) -> tuple[int, ...] | None:
        """The proxy's version, as its binary in `container` prints it; None when it does not say."""
        raise NotImplementedError

    def parse_version(self, output: str) -> tuple[int, ...] | None:
        """`1.25.1` -> (1, 25, 1), from what version_argv printed; None when it says no version."""
        match = self.version_re.search(output or "")
        return tuple(int(p) for p in match.group(1).split(".")) if match else None

    def render_options(self, version: tuple[int, ...] | None) -> Mapping[str, Any]:
        """Syntax choices the template makes by the proxy's version (None: unknown, e.g. render --from-file,
        where the choice must work on every version lbgen supports)."""
        return {}

    def tls_dir(self, config_path: str) -> str:
        """Where lbgen's certificates and keys go in the proxy container: beside its config file."""
        return config_path.rsplit("/", 1)[0] + "/lbgen-tls"

    def preflight(self, info: ContainerInfo, config_path: str, live: str | None) -> None:
        """Raise ProxyError when this proxy, as it runs, cannot be reloaded gracefully; nothing has
        changed yet. By default every running proxy can."""

    def reload(self, engine: Engine, info: ContainerInfo) -> None:
        """Make the proxy in `info` load its config file again, gracefully. ProxyError when it cannot be
        (nothing was sent), ReloadFailed when the attempt failed."""
        raise NotImplementedError

    def version_output(self, engine: Engine, info: ContainerInfo) -> ExecResult:
        """Run this kind's `-v` in the container (as root): what `lbgen doctor` reports, and a test that
        the container runs this kind at all."""
        raise NotImplementedError

    def master_is_pid1(self, command: Sequence[str]) -> bool:
        """PID 1 is this proxy's master process (run directly, or through the official image's entrypoint,
        which execs it), so signalling the container reaches it."""
        return bool(command) and (command[0].rsplit("/", 1)[-1] == self.binary
                                  or command[0].endswith("docker-entrypoint.sh"))

    def servers(self, algorithm: str, pool: Pool) -> tuple[tuple[Backend, ...], tuple[str, ...]]:
        """The servers to render for a pool balanced with `algorithm`, primaries first, then backups; and
        warnings about any left out. By default all of them."""
        return pool.primary + pool.backups, ()

    def __repr__(self) -> str:
        return f"<proxy kind {self.name}>"


def first_error(output: str) -> str:
    """The line of a proxy's output that says what went wrong (or its first line), at most 400 characters."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    for line in lines:
        if "emerg" in line or "ALERT" in line or "error" in line.lower():
            return line[:400]
    return (lines[0][:400] if lines else "no output")
