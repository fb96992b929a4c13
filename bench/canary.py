#!/usr/bin/env python3
"""A bad canary under keep-alive load: a `red` env whose /health passes but whose pages answer 500 one time
in three goes through `lbgen switch --steps 10,50,100`; prints the time from the first bad response a client
saw to the last response from red (all traffic back on blue), how many client requests saw a 5xx, and the
command's exit code (8 expected).

    python3 bench/canary.py --proxy nginx|haproxy [--workers 4] [--runs 3]

Load goes only to the proxy container on the network this script creates.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import urllib3

from _lab import ROOT, open_lab, write_config

sys.path.insert(0, str(ROOT / "tests"))
from scenario import FLAKY_BACKEND  # noqa: E402

ENV_RE = re.compile(rb"env=([a-z0-9_-]+)")


class Recorder:
    """Keep-alive GET workers that note (time, status, env) of every response."""

    def __init__(self, url: str, workers: int) -> None:
        self.url = url
        self.rows: list[tuple[float, int, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(workers)]

    def run(self) -> None:
        pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(connect=2, read=5))
        while not self.stop.is_set():
            try:
                response = pool.request("GET", self.url)
                match = ENV_RE.search(response.data)
                row = (time.monotonic(), response.status, match.group(1).decode() if match else "?")
            except urllib3.exceptions.HTTPError:
                row = (time.monotonic(), 0, "")
            with self.lock:
                self.rows.append(row)
            time.sleep(0.002)

    def __enter__(self) -> "Recorder":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lab = open_lab()
    try:
        net, _ = lab.network("canary")
        proxy = lab.nginx_proxy(net) if args.proxy == "nginx" else lab.haproxy_proxy(net)
        for _ in range(2):
            lab.backend(net, "web", "blue")
            lab.backend(net, "web", "red", command=FLAKY_BACKEND)
        config = write_config(Path(tempfile.mkdtemp()) / "lbgen.yaml", lab, net, proxy.name, args.proxy)
        lbgen = [sys.executable, "-m", "lbgen", "-c", str(config)]
        subprocess.run(lbgen + ["apply"], check=True, capture_output=True)
        url = f"http://{lab.ip(proxy, net)}/"
        for run in range(1, args.runs + 1):
            with Recorder(url, args.workers) as rec:
                time.sleep(1)
                started = time.monotonic()
                proc = subprocess.Popen(lbgen + ["switch", "--env", "red", "--steps", "10,50,100", "--step-time",
                                                 "30s", "--max-error-rate", "1%", "--min-requests", "20"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                lines = [(time.monotonic() - started, line.rstrip()) for line in proc.stderr or ()]
                proc.wait()
                ended = time.monotonic()
                time.sleep(1)
            rows = rec.rows
            bad = [t for t, status, _ in rows if status >= 500 or status == 0]
            red = [t for t, _, env in rows if env == "red"]
            after = [r for r in rows if r[0] > ended]
            first_bad = min(bad) if bad else None
            if first_bad is not None:
                print(f"  {first_bad - started:6.2f}s first bad response; "
                      f"{max(red) - started if red else 0:6.2f}s last response from red")
            back = (max(red) - first_bad) if bad and red else None
            print(f"{args.proxy} run {run}: exit {proc.returncode}; {len(bad)} of {len(rows)} client requests saw a "
                  f"5xx or failed; first bad response -> last response from red: "
                  f"{back:.2f}s" if back is not None else "n/a", end="")
            print(f"; command {ended - started:.2f}s; after it returned: "
                  f"{sum(1 for r in after if r[2] == 'blue')}/{len(after)} from blue")
            for t, line in lines:
                print(f"  {t:6.2f}s {line}")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
