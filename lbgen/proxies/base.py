"""What a proxy kind is: `ProxyKind` holds everything that differs between nginx, HAProxy, ... (config
path, template, validator, reload, preflight rules, render rules); config.py, render.py and the driver ask it.

Imports only lbgen.engine and the standard library (lbgen.model for type hints only), so that config.py
can look kinds up without importing the driver, which sits above config.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

from lbgen.engine import ContainerInfo, Engine, ExecResult

if TYPE_CHECKING:
    from lbgen.model import Backend, Pool

# How the driver's install script validates (see lbgen.proxies.driver.INSTALL_SCRIPT): CANDIDATE checks
# the new file on its own before the swap; INPLACE swaps first, checks the whole proxy config, swaps back.
CANDIDATE = "candidate"
INPLACE = "inplace"


class Slot(NamedTuple):
    """One server line of a backend: the backend it holds, or none (a spare, or vacated by one that left).
    A NamedTuple: a 50,000-server render builds one per server, at half a frozen dataclass's cost."""

    name: str  # the proxy's server name: the backend's own name, or a spare's (lbgen-spare-N)
    backend: Backend | None
    backup: bool = False

    @property
    def spare(self) -> bool:
        return self.backend is None and self.name.startswith("lbgen-spare-")


@dataclass(frozen=True)
class PreviousSlot:
    """A slot as the live config has it: its name and the backend (by name) it holds, if any."""

    name: str
    holds: str | None
    backup: bool = False


class ProxyKind:
    """One kind of proxy. Subclasses set the attributes and override the rules that differ."""

    name: str  # as written in lbgen.yaml's proxy.kind
    binary: str  # the proxy's executable, as PID 1 names it when it is the master process
    default_config_path: str  # where lbgen's file goes in the proxy container unless proxy.config_path says
    template_name: str  # the Jinja2 template that renders this kind's config
    # nginx: a second file, for the proxy's main context, that the user includes once from the top of the
    # proxy's own config (worker_shutdown_timeout, TCP `stream {}`); None when lbgen writes the whole config.
    default_main_config_path: str | None = None
    main_template_name: str | None = None
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

    def host_settings(self, hosts: Iterable[str]) -> Mapping[str, Any]:
        """Template values that the HTTP services' host names decide (nginx: its server names' hash sizes);
        none by default."""
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

    def include_directive(self, path: str) -> str:
        """The directive the proxy's own config needs to read lbgen's main-context file at `path`."""
        return ""

    def config_dump(self, engine: Engine, info: ContainerInfo) -> ConfigDump | None:
        """Every config file the proxy reads, as it reads them now; None when the kind cannot say."""
        return None

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

    def layout(self, live: str | None) -> Mapping[str, tuple[PreviousSlot, ...]] | None:
        """Per service, the server slots of the live config that changes through the runtime API keep;
        None when this kind (or the live config) changes servers only by a reload."""
        return None

    def slots(self, servers: Sequence[Backend], previous: Sequence[PreviousSlot] | None,
              spares: int) -> tuple[Slot, ...] | None:
        """The server slots to render for a service; None when `previous` cannot hold `servers` (a fresh
        layout is rendered then). By default none: a kind that changes servers only by a reload renders
        `servers` as they are."""
        return ()

    def runtime(self, engine: Engine, container: str, text: str | None) -> Any:
        """The runtime API of the proxy serving `text` in `container` (make_live, mismatched, sync), or None
        when there is none."""
        return None

    def runtime_plan(self, live: str | None, new: str) -> Any:
        """How to make `new` live without a reload (a kind's own plan object), or None: reload."""
        return None

    def __repr__(self) -> str:
        return f"<proxy kind {self.name}>"


class ConfigDump:
    """What `nginx -T` prints, split by file: the files nginx reads and their text, or why there is none."""

    def __init__(self, files: Mapping[str, str], error: str | None = None) -> None:
        self.files = dict(files)
        self.error = error  # set when the proxy could not dump its config (then `files` is empty)

    @classmethod
    def parse(cls, output: str) -> ConfigDump:
        """`# configuration file PATH:` headers, each followed by that file's text."""
        files: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output.splitlines():
            match = _DUMP_HEADER.match(line)
            if match:
                current = files.setdefault(match.group(1), [])
            elif current is not None:
                current.append(line)
        return cls({path: "\n".join(lines) for path, lines in files.items()})

    def includes(self, path: str) -> bool:
        """Whether the proxy reads `path`: it is among the dumped files, or (not written yet) an `include`
        directive outside comments names it or a glob matching it."""
        if path in self.files:
            return True
        prefix = next(iter(self.files), "/").rsplit("/", 1)[0]  # the main config's directory
        for text in self.files.values():
            for line in text.splitlines():
                for pattern in _INCLUDE.findall(line.split("#", 1)[0]):
                    pattern = pattern.strip("\"'")
                    if not pattern.startswith("/"):
                        pattern = f"{prefix}/{pattern}"
                    if fnmatch.fnmatchcase(path, pattern):
                        return True
        return False


_DUMP_HEADER = re.compile(r"^# configuration file (/.*):$")
_INCLUDE = re.compile(r"(?:^|[;{}\s])include\s+(\S+?)\s*;")


def first_error(output: str) -> str:
    """The line of a proxy's output that says what went wrong (or its first line), at most 400 characters."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    for line in lines:
        if "emerg" in line or "ALERT" in line or "error" in line.lower():
            return line[:400]
    return (lines[0][:400] if lines else "no output")
