#!/usr/bin/env python3
"""A backend that hangs (its process stopped with SIGSTOP, sent from the host to the PID Docker reports for
this script's own container: TCP still accepted, nothing answered, and no Docker event says so): how long
requests are still sent to it.

    python3 bench/hung_backend.py [--runs 2] [--workers 6]

Per proxy: 3 backends, `lbgen watch` at its defaults (each service checked at its own `health.interval`),
health `{interval: 500ms, timeout: 1s, fall: 2}`, so the target is interval x fall + timeout + 0.5 s = 2.5 s.
nginx has no active checks of its own: lbgen's check passes eject the backend (a reload). HAProxy runs its
own checks with the same settings (`inter 500ms fall 2`, `timeout check 1s`), the peer figure (the issue
measured 2.0-2.1 s). Workers send GETs on fresh connections with a 0.5 s timeout; a request that times out
(or takes over 0.5 s) went to the hung backend. The figure: from the SIGSTOP to the sending of the last such
request. Traffic goes only to the proxies on the network this script creates.
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _compiled import LBGEN
from _lab import open_lab, write_config

HEALTH = "{path: /health, interval: 500ms, timeout: 1s, rise: 2, fall: 2}"
STALL = 0.5
VERBOSE = False


class Prober:
    """Workers sending GETs on fresh connections; (send time, stalled) of each."""

    def __init__(self, host: str, workers: int) -> None:
        self.host, self.workers = host, workers
        self.results: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def start(self) -> Prober:
        for t in self._threads:
            t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            stalled = False
            try:
                conn = http.client.HTTPConnection(self.host, 80, timeout=STALL)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                stalled = time.monotonic() - sent > STALL
            except (OSError, http.client.HTTPException):
                stalled = True
            with self._lock:
                self.results.append((sent, stalled))
            time.sleep(0.005)

    def stop(self) -> list[tuple[float, bool]]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.results


def one_run(lab, kind: str, workers: int) -> tuple[float | None, int, int]:
    net, _ = lab.network(f"hung-{kind}")
    proxy = lab.nginx_proxy(net) if kind == "nginx" else lab.haproxy_proxy(net)
    backends = [lab.backend(net, "web", "blue") for _ in range(3)]
    config = write_config(Path(tempfile.mkdtemp()) / "lbgen.yaml", lab, net, proxy.name, kind, health=HEALTH)
    subprocess.run([LBGEN, "-c", str(config), "apply"], check=True, capture_output=True)
    watch = subprocess.Popen([LBGEN, "-c", str(config), "watch"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    threading.Thread(target=lambda: [lines.append((time.monotonic(), line.strip())) for line in watch.stderr],
                     daemon=True).start()
    victim = backends[0]
    pid = 0
    try:
        time.sleep(2.0)
        prober = Prober(lab.ip(proxy, net), workers).start()
        time.sleep(2.0)
        victim.reload()
        pid = int(victim.attrs["State"]["Pid"])
        hung_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(8.0)
        results = prober.stop()
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        watch.terminate()
        watch.wait(timeout=30)
    if VERBOSE:
        for at, line in lines:
            if at >= hung_at - 1 and ("eject" in line or "apply" in line):
                print(f"    {at - hung_at:+.2f}s {line[:160]}")
    stalled = [sent for sent, bad in results if bad and sent >= hung_at - STALL]
    last = max(stalled) - hung_at if stalled else None
    return last, len(stalled), len(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--verbose", action="store_true", help="watch's eject and apply lines, timed from the hang")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    lab = open_lab()
    try:
        print(f"health {HEALTH}; lbgen watch at its defaults; target: interval x fall + timeout + 0.5 s = 2.5 s")
        for kind in ("nginx", "haproxy"):
            figures = []
            for _ in range(args.runs):
                last, stalled, sent = one_run(lab, kind, args.workers)
                figures.append(last)
                shown = f"{last:.2f}s" if last is not None else "none"
                print(f"  lbgen+{kind}: last request sent to the hung backend {shown} after it hung "
                      f"({stalled} stalled of {sent} requests)")
            known = [f for f in figures if f is not None]
            if known:
                who = "lbgen's checks, then a reload" if kind == "nginx" else "HAProxy's own checks"
                print(f"{kind} ({who}): median {statistics.median(known):.2f}s over {len(known)} runs")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
