"""Checks through the engine, for a lbgen that cannot reach the app network (a CI runner that only has
DOCKER_HOST): every HTTP GET runs inside the proxy container, which is on that network by definition,
as one `docker exec` of a small POSIX-sh probe per round (a TCP connect for `mode: tcp` services); and the
rule that picks direct or engine checks.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from lbgen.config import CHECK_MODES, HealthConfig
from lbgen.engine import Engine, ExecResult
from lbgen.health import TCP_OK, CheckResult
from lbgen.model import Backend

AUTO, ENGINE, DIRECT = CHECK_MODES
REACH_TIMEOUT = 0.5  # seconds: a local bridge address answers (SYN-ACK or RST) in well under a millisecond

# `sh -c PROBE sh METHOD TIMEOUT BODY NHEADERS HEADER... HOST PORT PATH [HOST PORT PATH ...]`. Every value
# is a positional argument, never script text. METHOD: auto (the first of curl, bash's /dev/tcp, wget the
# image has: curl in the official nginx Debian image, bash in the official haproxy Debian image, busybox
# wget in Alpine images) or one of them. Each target is fetched concurrently, bounded by TIMEOUT; BODY=0
# prints one line per target, `INDEX CODE` or `INDEX ERR REASON`; BODY=1 (one target) prints that line,
# then the response as received.
PROBE = r"""
set -f
method=$1; t=$2; body=$3; n=$4; shift 4
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
hdrs=""; i=0
while [ "$i" -lt "$n" ]; do hdrs="$hdrs$1
"; shift; i=$((i + 1)); done
has() { command -v "$1" >/dev/null 2>&1; }
if [ "$method" = auto ]; then
  if has curl; then method=curl; elif has bash; then method=bash; elif has wget; then method=wget; else method=none; fi
fi
bounded() { if has timeout; then timeout "$t" "$@"; else "$@"; fi; }
fetch() {  # HOST PORT PATH -> the raw response (status line first) on stdout; exit 0, or 2 when no connection
  case $method in
  curl)
    u="http://$1:$2$3"; set -- -s -S -i --max-time "$t" -A lbgen -H 'Connection: close'
    old=$IFS; IFS='
'
    for h in $hdrs; do set -- "$@" -H "$h"; done
    IFS=$old
    out=$(curl "$@" "$u" 2>&1); rc=$?
    printf '%s\n' "$out"
    case $rc in 0) return 0;; 28) return 124;; 7) return 7;; *) return 2;; esac ;;
  bash)
    bounded bash -c 'h=${0#[}; h=${h%]}; exec 3<>"/dev/tcp/$h/$1" || exit 2
      cr=$'"'"'\r'"'"'; extra=""; own=""
      while IFS= read -r l; do
        [ -n "$l" ] || continue
        case $l in [Hh][Oo][Ss][Tt]:*) own=1;; esac
        extra="$extra$l$cr
"
      done <<< "$3"
      [ -n "$own" ] || extra="Host: $0:$1$cr
$extra"
      printf "GET %s HTTP/1.1%s\n%sUser-Agent: lbgen%s\nConnection: close%s\n%s\n" "$2" "$cr" "$extra" "$cr" "$cr" "$cr" >&3
      cat <&3' "$1" "$2" "$3" "$hdrs" 2>&1 ;;
  wget)
    u="http://$1:$2$3"; set -- -q -S -O - -U lbgen
    old=$IFS; IFS='
'
    for h in $hdrs; do set -- "$@" --header "$h"; done
    IFS=$old
    bounded wget "$@" "$u" 2>&1
    return $? ;;
  *) echo "no HTTP client in the proxy container (curl, bash or wget)"; return 3 ;;
  esac
}
verdict() {  # INDEX RC OUTPUT -> one line
  code=$(printf '%s\n' "$3" | sed -n 's/^[[:space:]]*HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | head -n 1)
  if [ -n "$code" ]; then printf '%s %s\n' "$1" "$code"; return; fi
  case $2 in
  124|137|143) r="timeout after ${t}s";;
  3) r="no HTTP client in the proxy container (curl, bash or wget)";;
  *) case $3 in
     *[Rr]efused*) r="connection refused";; *"o route"*) r="no route to host";;
     *nreachable*) r="network unreachable";; *[Rr]eset*) r="connection reset";;
     *[Tt]imed\ out*|*[Tt]imeout*) r="timeout after ${t}s";;
     *) if [ "$2" = 7 ]; then r="connection refused"
        elif [ "$2" = 0 ] && [ -z "$3" ]; then r="connection closed without a response"; else r="connection failed"; fi;;
     esac;;
  esac
  printf '%s ERR %s\n' "$1" "$r"
}
if [ "$body" = 1 ]; then
  out=$(fetch "$1" "$2" "$3"); verdict 0 $? "$out"; printf '%s\n' "$out"; exit 0
fi
i=0
while [ $# -ge 3 ]; do
  ( out=$(fetch "$1" "$2" "$3"); verdict "$i" $? "$out" ) &
  shift 3; i=$((i + 1))
done
wait
"""
_LINE = re.compile(r"^(\d+) (?:(\d{3})|ERR (.*))$")
# `sh -c CONNECT_PROBE sh TIMEOUT HOST PORT [HOST PORT ...]`: the connect check of `mode: tcp` services, from
# inside the container. Opens and closes a TCP connection to each target concurrently (nothing is sent),
# with bash's /dev/tcp (the Debian images) or BusyBox's nc (Alpine images), bounded by TIMEOUT;
# prints `INDEX OK` or `INDEX ERR REASON` per target.
CONNECT_PROBE = r"""
set -f
t=$1; shift
has() { command -v "$1" >/dev/null 2>&1; }
if has bash; then method=bash; elif has nc; then method=nc; else method=none; fi
bounded() { if has timeout; then timeout "$t" "$@"; else "$@"; fi; }
try() {  # HOST PORT -> output, exit 0 when connected
  case $method in
  bash) bounded bash -c 'h=${0#[}; h=${h%]}; exec 3<>"/dev/tcp/$h/$1"' "$1" "$2" 2>&1 ;;
  nc) w=${t%.*}; [ "${w:-0}" -ge 1 ] 2>/dev/null || w=1; h=${1#[}; h=${h%]}
      # `-z` (BusyBox with NC_110_COMPAT, Alpine); the small BusyBox nc (Debian's) has only `-e PROG`.
      out=$(bounded nc -z -w "$w" "$h" "$2" 2>&1); rc=$?
      case $out in *"invalid option"*|*"unrecognized option"*) bounded nc -w "$w" "$h" "$2" -e true 2>&1; return $?;; esac
      printf '%s' "$out"; return $rc ;;
  *) echo "no TCP client in the proxy container (bash or nc)"; return 3 ;;
  esac
}
i=0
while [ $# -ge 2 ]; do
  ( out=$(try "$1" "$2"); rc=$?
    if [ "$rc" = 0 ]; then printf '%s OK\n' "$i"; exit 0; fi
    case $rc in
    124|137|143) r="timeout after ${t}s";;
    3) r="no TCP client in the proxy container (bash or nc)";;
    *) case $out in
       *[Rr]efused*) r="connection refused";; *"o route"*) r="no route to host";;
       *nreachable*) r="network unreachable";; *[Tt]imed\ out*) r="timeout after ${t}s";;
       *) r="connection failed";;
       esac;;
    esac
    printf '%s ERR %s\n' "$i" "$r" ) &
  shift 2; i=$((i + 1))
done
wait
"""
_CONNECT_LINE = re.compile(r"^(\d+) (?:(OK)|ERR (.*))$")


class Probe:
    """HTTP GETs run from inside one container through the engine (the proxy container, normally)."""

    def __init__(self, engine: Engine, container: str, method: str = AUTO) -> None:
        self.engine = engine
        self.container = container
        self.method = method

    def _run(self, targets: Sequence[tuple[str, int, str]], timeout: float,
             headers: Mapping[str, str] | None, body: bool) -> ExecResult:
        seconds = f"{max(timeout, 0.05):g}"
        mode = "1" if body else "0"
        header_lines = [f"{k}: {v}" for k, v in (headers or {}).items()]
        count = str(len(header_lines))
        target_args = [str(part) for target in targets for part in target]
        return self.engine.exec(self.container, ["sh", "-c", PROBE, "sh", self.method, seconds, mode, count,
                                                 *header_lines, *target_args])

    def get_many(self, targets: Sequence[tuple[str, int, str]], timeout: float,
                 headers: Mapping[str, str] | None = None) -> list[int | str]:
        """One exec for all targets: per target, the HTTP status or the reason there was none."""
        if not targets:
            return []
        result = self._run(targets, timeout, headers, body=False)
        found: dict[int, int | str] = {}
        for line in result.output.splitlines():
            match = _LINE.match(line.strip())
            if match:
                found[int(match.group(1))] = int(match.group(2)) if match.group(2) else match.group(3)
        missing = f"no answer from the probe in {self.container} (exit {result.exit_code})"
        return [found.get(i, missing) for i in range(len(targets))]

    def connect_many(self, targets: Sequence[tuple[str, int]], timeout: float) -> list[str | None]:
        """One exec for all targets: per target, None when a TCP connection was accepted, else the reason."""
        if not targets:
            return []
        seconds = f"{max(timeout, 0.05):g}"
        args = [str(part) for target in targets for part in target]
        result = self.engine.exec(self.container, ["sh", "-c", CONNECT_PROBE, "sh", seconds, *args])
        found: dict[int, str | None] = {}
        for line in result.output.splitlines():
            match = _CONNECT_LINE.match(line.strip())
            if match:
                found[int(match.group(1))] = None if match.group(2) else match.group(3)
        missing = f"no answer from the probe in {self.container} (exit {result.exit_code})"
        return [found[i] if i in found else missing for i in range(len(targets))]

    def get(self, url: str, timeout: float, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """lbgen.health.HttpGet, from inside the container: (status, body) or ConnectionError/TimeoutError."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        target = (f"[{host}]" if ":" in host else host, parts.port or 80,
                  (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        result = self._run([target], timeout, headers, body=True)
        first, _, rest = result.output.partition("\n")
        match = _LINE.match(first.strip())
        if not match:
            raise ConnectionError(f"no answer from the probe in {self.container} (exit {result.exit_code})")
        if match.group(3):
            reason = match.group(3)
            raise (TimeoutError if reason.startswith("timeout") else ConnectionError)(reason)
        return int(match.group(2)), response_body(rest)


class EngineChecker:
    """lbgen.health.Checker (and BatchChecker) that checks backends from inside the proxy container."""

    def __init__(self, probe: Probe, docker_health: Callable[[Backend], str | None] | None = None) -> None:
        self.probe = probe
        self.docker_health = docker_health

    def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
        return self.check_many([backend], health)[0]

    def check_many(self, backends: Sequence[Backend], health: HealthConfig) -> list[CheckResult]:
        results: dict[int, CheckResult] = {}
        to_probe: list[int] = []
        for i, backend in enumerate(backends):
            if backend.docker_health is not None:
                status = self.docker_health(backend) if self.docker_health else backend.docker_health
                if status != "healthy":
                    results[i] = CheckResult(backend, False, f"docker health: {status or 'gone'}")
                    continue
            to_probe.append(i)
        if health.mode == "tcp":
            refused = self.probe.connect_many([(_host(backends[i].address), backends[i].port) for i in to_probe],
                                              health.timeout)
            for i, reason in zip(to_probe, refused):
                results[i] = CheckResult(backends[i], reason is None, reason or TCP_OK)
            return [results[i] for i in range(len(backends))]
        targets = [(_host(backends[i].address), backends[i].port, health.path) for i in to_probe]
        answers = self.probe.get_many(targets, health.timeout, health.request_headers() or None)
        for i, answer in zip(to_probe, answers):
            if isinstance(answer, str):
                results[i] = CheckResult(backends[i], False, answer)
            else:
                ok = health.status_ok(answer)
                results[i] = CheckResult(backends[i], ok, f"HTTP {answer}" + ("" if ok else f" on {health.path}"))
        return [results[i] for i in range(len(backends))]


def response_body(raw: str) -> str:
    """The body of a raw HTTP response as the probe printed it (curl/bash: headers, blank line, body;
    busybox/GNU wget: indented headers on stderr, then the body), without trailing newlines (the shell
    drops them)."""
    text = raw.replace("\r\n", "\n")
    if "\n\n" in text:
        return text.split("\n\n", 1)[1].rstrip("\n")
    return "\n".join(line for line in text.splitlines() if not line.startswith(" ") and not line.startswith("HTTP/"))


def docker_host_is_remote(docker_host: str | None) -> bool:
    """DOCKER_HOST names another machine (ssh://, or tcp:// to a host other than loopback)."""
    if not docker_host or docker_host.startswith(("unix://", "npipe://", "fd://")):
        return False
    if docker_host.startswith("ssh://"):
        return True
    host = urlsplit(docker_host if "://" in docker_host else f"tcp://{docker_host}").hostname or ""
    return host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("127.")


def can_reach(address: str, port: int, timeout: float = REACH_TIMEOUT) -> bool:
    """A TCP connection to address:port is answered, by an accept or a refusal: the network is routable
    from here. A timeout, or no route, means it is not (Docker drops traffic from other bridges)."""
    import socket

    try:
        with socket.create_connection((address.strip("[]"), port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def resolve_mode(setting: str, docker_host: str | None, reach: Callable[[], bool]) -> tuple[str, str]:
    """(direct or engine, why) for a `checks` setting. `auto`: engine when DOCKER_HOST is another machine,
    else direct when the proxy's address on the app network answers from here, else engine."""
    if setting in (ENGINE, DIRECT):
        return setting, "set"
    if docker_host_is_remote(docker_host):
        return ENGINE, f"DOCKER_HOST={docker_host} is another machine"
    if reach():
        return DIRECT, "the app network is reachable"
    return ENGINE, "the app network is not reachable from here"


def env_checks() -> str | None:
    value = os.environ.get("LBGEN_CHECKS")
    return value.strip().lower() if value else None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
