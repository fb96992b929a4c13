#!/usr/bin/env python3
"""Keep-alive HTTP load for cutover tests, benches and the demo, bounded in time and count.

Each worker keeps one connection open and retries an idempotent GET when the server closed an idle
connection before answering, as browsers and urllib3 do. Send it only to loopback or to containers
you created. Usable as a module (`Load`) or a script printing a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import threading
import time
from collections import Counter

import urllib3
from urllib3.util.retry import Retry

ENV_RE = re.compile(rb"env=([a-z0-9_-]+)")


class Load:
    def __init__(self, url: str, workers: int = 4, pause: float = 0.002, max_seconds: float = 120.0,
                 max_requests: int = 2_000_000, host_header: str | None = None) -> None:
        self.url = url
        self.workers = workers
        self.pause = pause
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.headers = {"Host": host_header} if host_header else {}
        self.sent = 0
        self.failed = 0
        self.envs: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []  # (time, env) of every env change seen
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_env = ""

    def start(self) -> "Load":
        self.started = time.monotonic()
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self) -> None:
        retry = Retry(total=2, connect=2, read=1, status=0, redirect=0, backoff_factor=0,
                      allowed_methods=frozenset({"GET"}))
        pool = urllib3.PoolManager(maxsize=1, retries=retry, timeout=urllib3.Timeout(connect=2, read=5))
        deadline = self.started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.sent >= self.max_requests:
                    break
                self.sent += 1
            try:
                response = pool.request("GET", self.url, headers=self.headers)
                ok = response.status == 200
                match = ENV_RE.search(response.data)
                env = match.group(1).decode() if match else "?"
                if not ok:
                    error = f"HTTP {response.status}"
            except urllib3.exceptions.HTTPError as e:
                ok, env, error = False, "", type(e).__name__ + ": " + str(e)[:120]
            with self._lock:
                if ok:
                    self.envs[env] += 1
                    if env != self._last_env:
                        self.timeline.append((time.monotonic() - self.started, env))
                        self._last_env = env
                else:
                    self.failed += 1
                    self.errors[error] += 1
            if self.pause:
                time.sleep(self.pause)
        pool.clear()

    def stop(self) -> "Load":
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self

    def summary(self) -> dict:
        return {"sent": self.sent, "failed": self.failed, "by_env": dict(self.envs),
                "errors": dict(self.errors), "timeline": [(round(t, 3), e) for t, e in self.timeline]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--host", default=None, help="Host header")
    args = parser.parse_args()
    load = Load(args.url, workers=args.workers, max_seconds=args.seconds, host_header=args.host).start()
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    print(json.dumps(load.stop().summary()))


if __name__ == "__main__":
    main()


class Wrk:
    """wrk -c8 for the duration of a phase, when wrk is installed."""

    def __init__(self, url: str) -> None:
        self.proc = (subprocess.Popen(["wrk", "-t2", "-c8", "-d600s", url], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) if shutil.which("wrk") else None)

    def stop(self) -> str:
        if self.proc is None:
            return "wrk not installed"
        self.proc.send_signal(2)  # SIGINT: wrk prints its summary
        out = self.proc.communicate(timeout=30)[0]
        requests = re.search(r"(\d+) requests in", out)
        sockets = re.search(r"Socket errors: (.*)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        parts = [f"{requests.group(1) if requests else '?'} requests"]
        parts.append(f"socket errors: {sockets.group(1)}" if sockets else "0 socket errors")
        parts.append(f"{non2xx.group(1) if non2xx else 0} non-2xx")
        return ", ".join(parts)
