"""The analysis of a canary from the proxy's own figures: per env, over a window, how many responses the
proxy sent, how many were 5xx and their p95 latency, and the verdict against the thresholds.

The figures come from one log line per request that the proxy writes to its stdout, read back through the
engine (`Engine.logs`, so a remote DOCKER_HOST works, and no tool is needed in the proxy image): nginx
writes a JSON line per request of a service with a canary (lbgen's template adds the `log_format` and
`access_log`), HAProxy's `option httplog` line goes to stdout in lbgen's template anyway. A line is told
to an env by its upstream address (nginx) or server name (HAProxy), through the inventory.
HAProxy's per-server counters were not used: every canary step is a reload, which starts a worker with
counters at zero, and they carry no percentile.
"""
from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from lbgen.engine import Engine
from lbgen.errors import UsageError
from lbgen.model import Backend, Figures, percent as _pct

LOW_TRAFFIC_MODES = ("pass", "fail")
# HAProxy's httplog line (the default `option httplog` format), as far as the status code:
# client [accept date] frontend backend/server TR/Tw/Tc/Tr/Ta status ...
_HTTPLOG = re.compile(r"\S+ \[[^\]]+\] \S+ (?P<backend>[^/\s]+)/(?P<server>\S+) "
                      r"-?\d+/-?\d+/-?\d+/-?\d+/(?P<ta>-?\d+) (?P<status>-?\d+) ")


@dataclass(frozen=True)
class Thresholds:
    """What a window must show: at most `max_error_rate` (a fraction) of 5xx responses, counted once
    `min_requests` were seen (fewer: not enough traffic, a pass with a warning or a fail), and, when set,
    a p95 latency of at most `max_p95` seconds."""

    max_error_rate: float = 0.01
    min_requests: int = 20
    on_low_traffic: str = "pass"
    max_p95: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise UsageError(f"--max-error-rate: {self.max_error_rate:.4g} is not 0-100%")
        if self.min_requests < 1:
            raise UsageError(f"--min-requests: expected 1 or more, got {self.min_requests}")
        if self.on_low_traffic not in LOW_TRAFFIC_MODES:
            raise UsageError(f"--on-low-traffic: expected pass or fail, got {self.on_low_traffic!r}")


@dataclass(frozen=True)
class Sample:
    """One response the proxy sent: when (epoch seconds, as the engine stamped the log line), from which
    env, its status, and how long the request took (seconds; None when the proxy did not say)."""

    time: float
    env: str
    status: int
    seconds: float | None = None


@dataclass(frozen=True)
class Verdict:
    """`breach`: a threshold is exceeded (traffic must go back); `low_traffic`: fewer than min_requests
    responses from the analysed env; `message`: the figures that decided."""

    breach: bool
    low_traffic: bool
    message: str
    figures: tuple[Figures, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"breach": self.breach, "low_traffic": self.low_traffic, "message": self.message,
                "figures": [f.to_dict() for f in self.figures]}


def figures(samples: Iterable[Sample], env: str) -> Figures:
    mine = [s for s in samples if s.env == env]
    times = sorted(s.seconds for s in mine if s.seconds is not None)
    p95 = times[max(0, math.ceil(0.95 * len(times)) - 1)] if times else None
    return Figures(env, len(mine), sum(1 for s in mine if s.status >= 500), p95)


def judge(samples: Sequence[Sample], env: str, others: Sequence[str], thresholds: Thresholds,
          final: bool = True) -> Verdict:
    """The verdict on `env` over `samples` (the `others` are reported beside it). Before the window ends
    (`final` False) only a breach counts; low traffic is decided at its end."""
    own = figures(samples, env)
    reported = (own,) + tuple(figures(samples, o) for o in others)
    if own.requests < thresholds.min_requests:
        message = (f"{env}: {own.requests} responses in the window, fewer than --min-requests "
                   f"{thresholds.min_requests} (not enough traffic)")
        breach = final and thresholds.on_low_traffic == "fail"
        return Verdict(breach, True, message, reported)
    if own.error_rate > thresholds.max_error_rate:
        return Verdict(True, False, f"{env}: {own.errors} of {own.requests} responses were 5xx "
                       f"({_pct(own.error_rate)} > {_pct(thresholds.max_error_rate)})", reported)
    if thresholds.max_p95 is not None and own.p95 is not None and own.p95 > thresholds.max_p95:
        return Verdict(True, False, f"{env}: p95 latency {own.p95 * 1000:.0f}ms > {thresholds.max_p95 * 1000:.0f}ms "
                       f"over {own.requests} responses", reported)
    return Verdict(False, False, own.describe(), reported)


def env_map(backends: Iterable[Backend], stable_env: str) -> dict[str, str]:
    """Upstream address (nginx) and server name (HAProxy) -> env; env-less backends count as the stable env."""
    out: dict[str, str] = {}
    for b in backends:
        env = b.env or stable_env
        out[b.endpoint] = env
        out[b.name] = env
    return out


def parse_line(kind: str, line: str, service: str, env_of: Mapping[str, str]) -> Sample | None:
    """One engine log line (`<RFC 3339 time> <text>`) as a Sample of `service`, or None when it is not a
    request of that service to a known backend."""
    stamp, _, text = line.partition(" ")
    when = parse_stamp(stamp)
    if when is None:
        return None
    if kind == "nginx":
        return _nginx(when, text, service, env_of)
    match = _HTTPLOG.search(text)
    if match is None or match.group("backend") != f"lbgen_{service}":
        return None
    env = env_of.get(match.group("server"))
    status = int(match.group("status"))
    if env is None or status < 0:
        return None
    ta = int(match.group("ta"))
    return Sample(when, env, status, ta / 1000 if ta >= 0 else None)


def _nginx(when: float, text: str, service: str, env_of: Mapping[str, str]) -> Sample | None:
    if not text.startswith('{"lbgen":'):
        return None
    try:
        data = json.loads(text)
        if data.get("lbgen") != service:
            return None
        # After a retry $upstream_addr lists every server tried ("a:80, b:80"); the last one answered.
        upstream = str(data.get("upstream", "")).split(",")[-1].strip()
        env = env_of.get(upstream)
        status = int(data["status"])
        seconds = float(data["time"]) if data.get("time") not in (None, "", "-") else None
    except (ValueError, KeyError, TypeError):
        return None
    return None if env is None else Sample(when, env, status, seconds)


def parse_stamp(stamp: str) -> float | None:
    """`2026-12-02T19:00:00.123456789Z` (the engine's log timestamp) -> epoch seconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if match is None:
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    base = datetime.datetime.fromisoformat(match.group(1) + zone).timestamp()
    return base + (float("0." + match.group(2)) if match.group(2) else 0.0)


class LogReader:
    """Reads the samples of one service from the proxy container's log through the engine."""

    def __init__(self, engine: Engine, container: str, kind: str, service: str, env_of: Mapping[str, str],
                 slots: Callable[[], Mapping[str, str]] | None = None) -> None:
        """`slots` (HAProxy): the live config's server slot names -> the backend each holds; a backend a
        runtime change put in a spare slot is logged under the slot's name (lbgen-spare-N)."""
        self.engine = engine
        self.container = container
        self.kind = kind
        self.service = service
        self.env_of = dict(env_of)
        self.slots = slots

    def read(self, since: float, until: float) -> list[Sample]:
        """The samples stamped in [since, until)."""
        if self.slots is not None:
            for slot, backend in self.slots().items():
                if backend in self.env_of:
                    self.env_of[slot] = self.env_of[backend]
        text = self.engine.logs(self.container, math.floor(since), math.ceil(until) + 1)
        out = []
        for line in text.splitlines():
            sample = parse_line(self.kind, line, self.service, self.env_of)
            if sample is not None and since <= sample.time < until:
                out.append(sample)
        return out


def parse_percent(text: str) -> float:
    """`1%`, `0.5%` or `0.01` -> a fraction (--max-error-rate)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--max-error-rate: {text!r} is not a percentage (e.g. 1%, 0.5%)") from None
    if not 0 <= value <= 1:
        raise UsageError(f"--max-error-rate: {text!r} is not 0-100%")
    return value


def parse_steps(text: str) -> tuple[int, ...]:
    """`10,25,50,100` -> (10, 25, 50, 100): rising percentages, 1-100; 100 promotes."""
    try:
        steps = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"--steps: {text!r} is not a list of percentages such as 10,25,50,100") from None
    if not steps or any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise UsageError(f"--steps: {text!r}: expected rising percentages 1-100, such as 10,25,50,100")
    return steps


