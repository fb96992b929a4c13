"""HTTP health checks (TCP connects for `mode: tcp` services) and the health gate: every request lbgen itself
sends to a backend or to the proxy's status listener goes through `http_get` here, every connect check
through `tcp_connect` (the docker SDK sends its own, to the engine).

Checks run concurrently, each bounded by the service's `timeout`, so a black-holed backend costs one
timeout, not one per backend. Time is injected (`clock`, `sleep`) so the gate's timeout path is tested
without waiting.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from lbgen.config import HealthConfig
from lbgen.model import Backend

MAX_PARALLEL_CHECKS = 64
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class CheckResult:
    backend: Backend
    ok: bool
    detail: str  # "HTTP 200", "HTTP 503", "timeout after 2s", "connection refused", "docker health: starting"

    def describe(self) -> str:
        return f"{self.backend.name}: {self.detail}"


class Checker(Protocol):
    def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
        """One check of one backend; never raises for a failing backend."""


@runtime_checkable
class BatchChecker(Protocol):
    """A Checker that checks many backends in one go (lbgen.probe.EngineChecker: one exec per round)."""

    def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
        """One check of one backend."""

    def check_many(self, backends: Sequence[Backend], health: HealthConfig) -> list[CheckResult]:
        """One check of each backend, concurrently; results in the order of `backends`."""


class HttpGet(Protocol):
    def __call__(self, url: str, timeout: float, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """GET url -> (status, body); ConnectionError/TimeoutError when there is no answer.

        Callers pass `headers` only when there are some, so a get that takes (url, timeout) still fits
        every service without health.host / health.headers."""


def http_get(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    """GET url (http://host:port/path) -> (status, body); raises ConnectionError/TimeoutError with a short
    reason. Plain http.client, about a fifth of the CPU of `requests` per check (1,000 services are 4,000
    checks a pass): no proxy from the environment (a check goes straight to the backend, as the proxy
    would), no redirect followed, at most BODY_LIMIT bytes of the body read."""
    import socket  # here, like http.client: `lbgen render` starts without them
    from http.client import HTTPConnection, HTTPException
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", target, headers={"User-Agent": "lbgen", "Accept": "*/*", **(headers or {}),
                                             "Connection": "close"})
        response = conn.getresponse()
        return response.status, _text(response.read(BODY_LIMIT), response.headers.get_content_charset())
    except (socket.timeout, TimeoutError) as e:
        raise TimeoutError(f"timeout after {_secs(timeout)}") from e
    except (OSError, HTTPException) as e:
        raise ConnectionError(_reason(e)) from e
    finally:
        conn.close()


BODY_LIMIT = 64 * 1024  # a health or status answer is short; a larger body is cut, not refused


def _text(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def tcp_connect(address: str, port: int, timeout: float) -> None:
    """Open and close a TCP connection to address:port (nothing is sent); ConnectionError/TimeoutError
    with a short reason when it is not accepted."""
    import socket

    try:
        with socket.create_connection((address.strip("[]"), port), timeout=timeout):
            return
    except socket.timeout as e:
        raise TimeoutError(f"timeout after {_secs(timeout)}") from e
    except OSError as e:
        raise ConnectionError(_reason(e)) from e


TCP_OK = "TCP connect ok"  # the detail of a passed connect check


class HttpChecker:
    """Checks backends directly at address:port over HTTP (a TCP connect for a `mode: tcp` service), as the
    proxy would reach them."""

    def __init__(self, get: HttpGet = http_get, docker_health: Callable[[Backend], str | None] | None = None,
                 connect: Callable[[str, int, float], None] = tcp_connect):
        self.get = get
        self.docker_health = docker_health
        self.connect = connect

    def check(self, backend: Backend, health: HealthConfig) -> CheckResult:
        if backend.docker_health is not None:
            status = self.docker_health(backend) if self.docker_health else backend.docker_health
            if status != "healthy":
                return CheckResult(backend, False, f"docker health: {status or 'gone'}")
        if health.mode == "tcp":
            try:
                self.connect(backend.address, backend.port, health.timeout)
            except (TimeoutError, ConnectionError) as e:
                return CheckResult(backend, False, str(e))
            return CheckResult(backend, True, TCP_OK)
        url = f"http://{backend.endpoint}{health.path}"
        headers = health.request_headers()
        try:
            if headers:
                status_code, _ = self.get(url, health.timeout, headers)
            else:
                status_code, _ = self.get(url, health.timeout)
        except (TimeoutError, ConnectionError) as e:
            return CheckResult(backend, False, str(e))
        ok = health.status_ok(status_code)
        return CheckResult(backend, ok, f"HTTP {status_code}" + ("" if ok else f" on {health.path}"))


def check_all(backends: Sequence[Backend], health: HealthConfig, checker: Checker) -> list[CheckResult]:
    """One check of each backend, concurrently; results in the order of `backends`."""
    return check_groups([(backends, health)], checker)[0]


def check_confirmed(backends: Sequence[Backend], health: HealthConfig, checker: Checker,
                    sleep: Callable[[float], None]) -> list[CheckResult]:
    """One check of each backend; one that fails is checked again, `health.interval` apart, until it passes
    or has failed `health.fall` times in a row (the rule of the proxies' own checks): one slow answer from a
    busy backend is not the backend going down. Results in the order of `backends`."""
    results = check_all(backends, health, checker)
    for _ in range(health.fall - 1):
        failing = [r.backend for r in results if not r.ok]
        if not failing:
            break
        sleep(health.interval)
        again = dict(zip(failing, check_all(failing, health, checker)))
        results = [again.get(r.backend, r) for r in results]
    return results


def check_groups(groups: Sequence[tuple[Sequence[Backend], HealthConfig]], checker: Checker,
                 max_parallel: int = MAX_PARALLEL_CHECKS) -> list[list[CheckResult]]:
    """One check of each backend of each group (backends, their service's health), results per group in
    the order of its backends: all in one concurrent batch, so checking many services takes about one
    `timeout` however many of them have a backend that hangs (up to `max_parallel`), not one per service.
    A BatchChecker checks each group in one go (EngineChecker: one exec per service), the groups concurrently."""
    if isinstance(checker, BatchChecker):
        batches = [(backends, health) for backends, health in groups if backends]
        answers = iter(_at_once(lambda g: checker.check_many(*g), batches, max_parallel))
        return [next(answers) if backends else [] for backends, _ in groups]
    jobs = [(i, b, health) for i, (backends, health) in enumerate(groups) for b in backends]
    results: list[list[CheckResult]] = [[] for _ in groups]
    for (i, _, _), result in zip(jobs, _at_once(lambda j: checker.check(j[1], j[2]), jobs, max_parallel)):
        results[i].append(result)
    return results


def _at_once(call: Callable[[T], R], jobs: Sequence[T], max_parallel: int) -> list[R]:
    """call(job) for each job, up to `max_parallel` at a time (one job runs here); results in job order."""
    if len(jobs) <= 1:
        return [call(job) for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(max_parallel, len(jobs)), thread_name_prefix="lbgen-check") as pool:
        return list(pool.map(call, jobs))


@dataclass
class GateResult:
    passed: bool
    healthy: list[Backend]
    failing: list[CheckResult]  # the last failing result of each backend that did not pass
    required: int
    elapsed: float
    rounds: int = 0

    def summary(self) -> str:
        if not self.failing:
            return "all healthy"
        return "; ".join(r.describe() for r in self.failing)


@dataclass
class GateProgress:
    """What a progress display gets after each round."""

    passes: dict[str, int]
    rise: int
    required: int
    total: int
    time_left: float
    last: dict[str, CheckResult] = field(default_factory=dict)


def required_count(total: int, min_healthy: str | None) -> int:
    """`--min-healthy N` or `N%` -> how many of `total` must pass (all when None)."""
    if min_healthy is None:
        return total
    text = str(min_healthy).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, min(total, math.ceil(pct * total / 100 - 1e-9)))
        count = int(text)
        if count < 1:
            raise ValueError
        return min(total, count)
    except ValueError:
        from lbgen.errors import UsageError

        raise UsageError(f"--min-healthy {min_healthy!r}: expected a count such as 2 or a share such as 50%") from None


def gate(
    backends: Sequence[Backend],
    health: HealthConfig,
    checker: Checker,
    timeout: float,
    required: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_round: Callable[[GateProgress], None] | None = None,
) -> GateResult:
    """Check until `required` backends (all by default) have passed `rise` checks in a row, or `timeout`."""
    required = len(backends) if required is None else required
    start = clock()
    passes = {b.name: 0 for b in backends}
    last: dict[str, CheckResult] = {}
    rounds = 0
    while True:
        pending = [b for b in backends if passes[b.name] < health.rise]
        # A check may not outlast the gate: a black-holed backend would hold the round for health.timeout.
        left = timeout - (clock() - start)
        bounded = health if health.timeout <= left else replace(health, timeout=max(round(left, 1), 0.1))
        results = check_all(pending, bounded, checker)
        rounds += 1
        for r in results:
            passes[r.backend.name] = passes[r.backend.name] + 1 if r.ok else 0
            if r.ok or bounded is health or r.backend.name not in last or last[r.backend.name].ok:
                last[r.backend.name] = r  # a check cut short by the deadline does not hide a full one's verdict
        done = [b for b in backends if passes[b.name] >= health.rise]
        elapsed = clock() - start
        if on_round:
            on_round(GateProgress(dict(passes), health.rise, required, len(backends), max(0.0, timeout - elapsed),
                                  dict(last)))
        if len(done) >= required:
            failing = [last[b.name] for b in backends if passes[b.name] < health.rise and b.name in last
                       and not last[b.name].ok]
            return GateResult(True, done, failing, required, elapsed, rounds)
        if elapsed + health.interval > timeout:
            failing = [
                last.get(b.name) or CheckResult(b, False, "not checked")
                for b in backends if passes[b.name] < health.rise
            ]
            failing = [f if not f.ok else CheckResult(f.backend, False, f"passed {passes[f.backend.name]} of "
                                                      f"{health.rise} checks") for f in failing]
            return GateResult(False, done, failing, required, elapsed, rounds)
        sleep(health.interval)


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"


def _reason(error: Exception) -> str:
    text = str(error).lower()
    for needle, reason in (("refused", "connection refused"), ("no route", "no route to host"),
                           ("unreachable", "network unreachable"), ("reset", "connection reset"),
                           ("remote end closed", "connection closed without a response"),
                           ("timed out", "timeout")):
        if needle in text:
            return reason
    return "connection failed"
