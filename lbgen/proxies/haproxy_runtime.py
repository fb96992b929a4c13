"""HAProxy's runtime API: which differences between two rendered configs it can make live without a reload
(the address, weight and maint state of existing server slots), the commands that do, the slot layout a
render keeps so that a backend joining takes a spare slot, and what the running worker has (`show servers
state`). Pure, apart from `RuntimeApi`, which talks to the worker through the engine (docs/haproxy-runtime.md).

Imports lbgen.engine, lbgen.errors and lbgen.proxies.base only.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from lbgen.engine import ROOT, Engine
from lbgen.errors import RuntimeApiError
from lbgen.proxies.base import PreviousSlot, Slot

if TYPE_CHECKING:
    from lbgen.model import Backend

SPARE_PREFIX = "lbgen-spare-"
# The admin socket lbgen talks to: TCP on the proxy's loopback, reachable from an exec in the container with
# bash's /dev/tcp or BusyBox nc (the official image has neither socat nor a client for a unix socket).
SOCKET_RE = re.compile(r"^[ \t]*stats socket ipv4@127\.0\.0\.1:([0-9]+)\b[^\n#]*\blevel admin\b", re.M)
_SECTION_RE = re.compile(r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|program|"
                         r"http-errors|ring|cache|mailers)\b\s*(\S*)")
_HOLDS_RE = re.compile(r"\bholds=(\S+)")
_META_LINES = ("# lbgen-meta: ", "# lbgen-pool: ")
# srv_admin_state bits that mean "in maintenance" (forced, inherited, by DNS resolution); 0x04 (CMAINT) only
# records that the config said `disabled` and stays set after `state ready`.
_MAINT_BITS = 0x01 | 0x02 | 0x20
_LINE_MAX = 4000  # one CLI line per connection; HAProxy's buffer is larger, lbgen stays well under it


@dataclass(frozen=True)
class ServerLine:
    """One `server` line of a backend as the file has it."""

    backend: str
    name: str
    address: str  # without brackets
    port: int
    weight: int
    disabled: bool
    backup: bool
    holds: str | None  # the backend (container) a spare slot holds, from the line's `holds=` comment

    @property
    def key(self) -> tuple[str, str]:
        return self.backend, self.name


@dataclass(frozen=True)
class RuntimeServer:
    """One server as the running worker has it (`show servers state`)."""

    address: str
    port: int
    weight: int
    maint: bool


@dataclass(frozen=True)
class ParsedConfig:
    """A HAProxy config split into what only a reload can change (`structure`: every line, with server
    lines cut to their name and fixed options, lbgen's header lines and the generation left out) and
    what the runtime API can (`servers`)."""

    structure: str
    servers: Mapping[tuple[str, str], ServerLine]
    runtime_port: int | None


@dataclass(frozen=True)
class RuntimePlan:
    """The commands that make a new config live in the running worker, or none (nothing to change)."""

    port: int
    commands: tuple[str, ...]
    joined: int = 0
    left: int = 0

    def batches(self) -> list[str]:
        """Commands joined with `;` into lines of at most _LINE_MAX characters (one connection each)."""
        lines: list[str] = []
        line = ""
        for command in self.commands:
            if line and len(line) + 2 + len(command) > _LINE_MAX:
                lines.append(line)
                line = ""
            line = f"{line}; {command}" if line else command
        return lines + ([line] if line else [])


@functools.lru_cache(maxsize=4)
def parse(text: str) -> ParsedConfig:
    """Split a config into structure and server lines (see ParsedConfig). One apply asks this of the same
    texts (the live config, the new one) in up to five places (reconcile, the slot layout, the plan, the
    check after a runtime change), and a config of 1,000 services takes about 0.2 s to split: each text is
    split once (the result is frozen and its `servers` never changed, so sharing it is safe)."""
    generation = _generation(text)
    structure: list[str] = []
    servers: dict[tuple[str, str], ServerLine] = {}
    backend = ""
    for line in text.splitlines():
        if line.startswith(_META_LINES):
            continue
        section = _SECTION_RE.match(line)
        if section:
            backend = section.group(2) if section.group(1) in ("backend", "listen") else ""
        server = _server_line(backend, line) if backend else None
        if server is None:
            structure.append(line.replace(generation, "") if generation else line)
            continue
        servers[server.key] = server
        structure.append(f"    server {server.name}{' backup' if server.backup else ''}"
                         f"{_fixed_options(line)}")
    return ParsedConfig("\n".join(structure), servers, _runtime_port(text))


def _runtime_port(text: str) -> int | None:
    match = SOCKET_RE.search(text)
    return int(match.group(1)) if match else None


def _generation(text: str) -> str | None:
    match = re.search(r'^# lbgen-meta: .*"generation":"([0-9a-f]+)"', text, re.M)
    return match.group(1) if match else None


def _server_line(backend: str, line: str) -> ServerLine | None:
    code, _, comment = line.partition("#")
    words = code.split()
    if len(words) < 3 or words[0] != "server":
        return None
    endpoint = _endpoint(words[2])
    if endpoint is None:
        return None
    options = words[3:]
    weight = 1
    if "weight" in options:
        at = options.index("weight")
        if at + 1 >= len(options) or not options[at + 1].isdigit():
            return None
        weight = int(options[at + 1])
    holds = _HOLDS_RE.search(comment)
    return ServerLine(backend, words[1], endpoint[0], endpoint[1], weight, "disabled" in options,
                      "backup" in options, holds.group(1) if holds else None)


def _fixed_options(line: str) -> str:
    """A server line's options the runtime API cannot change (everything but address, weight, disabled,
    backup, which the structure names separately, and the comment)."""
    words = line.partition("#")[0].split()[3:]
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "weight":
            skip = True
        elif word not in ("disabled", "backup"):
            kept.append(word)
    return "".join(" " + w for w in kept)


def _endpoint(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def plan(live: str | None, new: str) -> RuntimePlan | None:
    """The runtime commands that take the worker serving `live` to `new`; None when `new` differs in
    anything but server slots' address, weight and maint state (then only a reload makes it live), or
    `live` has no admin socket lbgen can reach."""
    if not live:
        return None
    old, wanted = parse(live), parse(new)
    if old.runtime_port is None or old.runtime_port != wanted.runtime_port or old.structure != wanted.structure:
        return None
    ready: list[str] = []
    maint: list[str] = []
    joined = left = 0
    for key, line in wanted.servers.items():
        before = old.servers[key]
        if _same(before, line):
            continue
        if line.disabled:
            left += 1
            maint += commands_for(line)
        else:
            joined += 0 if not before.disabled else 1
            ready += commands_for(line)
    # Joining servers first: a pool whose members are all replaced never has none.
    return RuntimePlan(old.runtime_port, tuple(ready + maint), joined, left)


def _same(a: ServerLine, b: ServerLine) -> bool:
    if a.disabled or b.disabled:
        return a.disabled == b.disabled
    return (a.address, a.port, a.weight) == (b.address, b.port, b.weight)


def commands_for(line: ServerLine) -> list[str]:
    """The commands that give the running server what its line says."""
    ref = f"{line.backend}/{line.name}"
    if line.disabled:
        return [f"set server {ref} state maint"]
    return [f"set server {ref} addr {line.address} port {line.port}", f"set weight {ref} {line.weight}",
            f"set server {ref} state ready"]


def parse_state(output: str) -> dict[tuple[str, str], RuntimeServer]:
    """`show servers state` (format 1): per (backend, server), what the worker has. Other lines (a set
    command's message, the header) are ignored."""
    servers: dict[tuple[str, str], RuntimeServer] = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 19 or not (fields[0].isdigit() and fields[2].isdigit() and fields[6].isdigit()):
            continue
        if not (fields[7].isdigit() and fields[18].isdigit()):
            continue
        servers[(fields[1], fields[3])] = RuntimeServer(fields[4], int(fields[18]), int(fields[7]),
                                                        bool(int(fields[6]) & _MAINT_BITS))
    return servers


def mismatches(parsed: ParsedConfig, state: Mapping[tuple[str, str], RuntimeServer]) -> list[ServerLine]:
    """The file's server lines the worker does not have as written."""
    out = []
    for key, line in parsed.servers.items():
        have = state.get(key)
        if have is None or have.maint != line.disabled:
            out.append(line)
        elif not line.disabled and (have.address, have.port, have.weight) != (line.address, line.port, line.weight):
            out.append(line)
    return out


def describe(lines: Sequence[ServerLine]) -> str:
    shown = ", ".join(f"{line.backend}/{line.name}" for line in lines[:5])
    return shown + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else "")


# --- slots -----------------------------------------------------------------------------------------------

def layout(text: str | None) -> dict[str, tuple[PreviousSlot, ...]] | None:
    """Per service, the server slots of a live config lbgen rendered (in order); None when it has no admin
    socket (then every change reloads and renders a fresh layout)."""
    if not text:
        return None
    parsed = parse(text)
    if parsed.runtime_port is None:
        return None
    slots: dict[str, list[PreviousSlot]] = {}
    for line in parsed.servers.values():
        if not line.backend.startswith("lbgen_"):
            continue
        holds = None if line.disabled else (line.holds or line.name)
        slots.setdefault(line.backend[len("lbgen_"):], []).append(PreviousSlot(line.name, holds, line.backup))
    return {name: tuple(s) for name, s in slots.items()}


@functools.lru_cache(maxsize=4)
def _spares(count: int) -> tuple[Slot, ...]:
    """A fresh layout's spare slots, the same for every service (1,000 services would build 16,000)."""
    return tuple(Slot(f"{SPARE_PREFIX}{i}", None) for i in range(1, count + 1))


def assign_slots(servers: Sequence[Backend], previous: Sequence[PreviousSlot] | None,
                 spares: int) -> tuple[Slot, ...] | None:
    """The server slots of one backend: `previous` kept (each backend in the slot it holds, a re-admitted
    one back in the slot named after it, a spare taken for each new one), or a fresh layout (every server
    named after its backend, then `spares` spares) when there is no previous layout. None when a new
    backend finds no free spare (or is a backup: spares are not): only a reload can add it."""
    if previous is None:
        return tuple([Slot(b.name, b, b.backup) for b in servers] + list(_spares(spares))) if servers else ()
    by_name = {b.name: b for b in servers}
    placed: set[str] = set()
    slots: list[Slot] = []
    for prev in previous:
        backend = by_name.get(prev.holds) if prev.holds else None
        if backend is None and not prev.name.startswith(SPARE_PREFIX):
            backend = by_name.get(prev.name)  # re-admitted (after an ejection) into its own slot
        if backend is not None and backend.name not in placed and backend.backup == prev.backup:
            placed.add(backend.name)
            slots.append(Slot(prev.name, backend, prev.backup))
        else:
            slots.append(Slot(prev.name, None, prev.backup))
    for backend in servers:
        if backend.name in placed:
            continue
        free = next((i for i, s in enumerate(slots) if s.backend is None and s.name.startswith(SPARE_PREFIX)
                     and s.backup == backend.backup), None)
        if free is None:
            return None
        slots[free] = Slot(slots[free].name, backend, backend.backup)
    return tuple(slots)


# --- talking to the worker ---------------------------------------------------------------------------------

# `sh -c RUNTIME_SCRIPT sh PORT LINE...`: one connection per LINE to the admin socket on the container's
# loopback, printing each answer. bash's /dev/tcp where bash exists (the official Debian-based image), else
# nc / BusyBox nc (Alpine). Every value is a positional argument, never script text. Exit 4: unreachable.
RUNTIME_SCRIPT = r"""
port=$1; shift
for line in "$@"; do
  if command -v bash >/dev/null 2>&1; then
    bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "%s\n" "$1" >&3 && cat <&3' "$port" "$line" 2>&1 || exit 4
  elif command -v nc >/dev/null 2>&1; then
    printf '%s\n' "$line" | nc 127.0.0.1 "$port" || exit 4
  else
    printf '%s\n' "$line" | busybox nc 127.0.0.1 "$port" || exit 4
  fi
done
"""
SHOW_STATE = "show servers state"


class RuntimeApi:
    """HAProxy's admin socket in one proxy container, through exec: no port published, no tool installed."""

    def __init__(self, engine: Engine, container: str, port: int) -> None:
        self.engine = engine
        self.container = container
        self.port = port

    def run(self, lines: Iterable[str]) -> str:
        """Send each line on its own connection, in one exec; their answers, concatenated."""
        port = str(self.port)
        result = self.engine.exec(self.container, ["sh", "-c", RUNTIME_SCRIPT, "sh", port, *lines], user=ROOT)
        if result.exit_code != 0:
            raise RuntimeApiError(f"cannot reach HAProxy's runtime API on 127.0.0.1:{self.port} in container "
                                  f"{self.container}: {(result.output or 'no output').strip()[:300]}")
        return result.output

    def apply(self, runtime_plan: RuntimePlan) -> dict[tuple[str, str], RuntimeServer]:
        """Run the plan's commands, then read the worker's state back (in the same exec)."""
        return parse_state(self.run([*runtime_plan.batches(), SHOW_STATE]))

    def state(self) -> dict[tuple[str, str], RuntimeServer]:
        return parse_state(self.run([SHOW_STATE]))

    def make_live(self, runtime_plan: RuntimePlan, text: str) -> None:
        """Run the plan, and check that the worker now has every server line of `text` (the new file) as
        written; RuntimeApiError when not (the caller reloads)."""
        wrong = mismatches(parse(text), self.apply(runtime_plan))
        if wrong:
            raise RuntimeApiError(f"after the runtime change HAProxy's servers differ from the file: {describe(wrong)}")

    def mismatched(self, text: str) -> list[ServerLine]:
        """The server lines of `text` (the file) the worker does not have as written."""
        return mismatches(parse(text), self.state())

    def sync(self, text: str) -> int:
        """Give the worker every server line of `text` it does not have as written (a runtime change cut
        short); how many it lacked. RuntimeApiError when it still differs."""
        parsed = parse(text)
        wrong = mismatches(parsed, self.state())
        if wrong:
            assert parsed.runtime_port is not None
            commands = [c for line in wrong for c in commands_for(line)]
            self.make_live(RuntimePlan(parsed.runtime_port, tuple(commands)), text)
        return len(wrong)

    def pid(self) -> int | None:
        """The worker's process id (`show info`): a reload changes it."""
        for line in self.run(["show info"]).splitlines():
            if line.startswith("Pid:") and line[4:].strip().isdigit():
                return int(line[4:].strip())
        return None


def runtime_for(engine: Engine, container: str, text: str | None) -> RuntimeApi | None:
    """The runtime API of the worker that serves `text` (a config lbgen rendered), or None when it has no
    admin socket lbgen can reach."""
    port = _runtime_port(text) if text else None
    return RuntimeApi(engine, container, port) if port is not None else None
