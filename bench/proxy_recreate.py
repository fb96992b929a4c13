#!/usr/bin/env python3
"""A recreated proxy keeps serving the release on record (issue #9): how soon `lbgen watch` configures a
fresh proxy container after its start, and whether any request reaches the env that was switched away from.

    python3 bench/proxy_recreate.py [--proxy nginx|haproxy|both] [--runs 5]

For each proxy kind: blue and green backends, `lbgen watch` running (a real `python -m lbgen watch` process),
`lbgen switch --env green` done. Then, --runs times, the proxy container is removed and a fresh one of the
same name is created and started (what `docker compose up -d` does after an image bump). A client polls the
new proxy every 5 ms from the moment `start` is called, and the script prints, per run and as medians:

- proxy up: the first answer of any kind (the proxy's own start: its placeholder config answers);
- green: the first answer from green (watch has configured the new proxy from the record);
- blue answers seen (must be 0: the recorded release never rolls back).

The peer figure is the proxy's own start: the difference is what lbgen adds. Traffic goes only to containers
on the network this script creates; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lab import ROOT, open_lab

sys.path.insert(0, str(ROOT / "tests"))
from dockerlab import http_get  # noqa: E402
from scenario import Scenario  # noqa: E402

COMMANDS = {"nginx": ["nginx", "-g", "daemon off;"],
            "haproxy": ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]}


def one_recreation(s: Scenario) -> tuple[float, float, int]:
    """(seconds to the proxy's first answer, seconds to green's first answer, blue answers) for one run."""
    lab = s.lab
    name = s.proxy.name
    s.proxy.remove(force=True)
    s.proxy = lab.container(s.net, name[len(lab.prefix):], command=COMMANDS[s.kind], start=False)
    started = time.perf_counter()
    s.proxy.start()
    s.proxy.reload()
    url = s.url
    up = green = None
    blue = 0
    deadline = started + 20
    while time.perf_counter() < deadline:
        try:
            status, body = http_get(url, timeout=0.3)
        except (TimeoutError, ConnectionError):
            time.sleep(0.005)
            continue
        now = time.perf_counter() - started
        up = now if up is None else up
        env = body.split()[0].split("=", 1)[1] if body.startswith("env=") else None
        blue += env == "blue"
        if env == "green" and green is None:
            green = now
        if green is not None and now > green + 1.0:  # keep sampling a second past the first green answer
            break
        time.sleep(0.005)
    if green is None:
        raise SystemExit(f"{s.kind}: green not served within 20 s of the proxy's start")
    return up if up is not None else green, green, blue


def run_kind(kind: str, runs: int, lab: object, tmp: Path) -> None:
    s = Scenario(lab, tmp / kind, kind, blue=1, green=1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp / f"{kind}-watch.log", "w")
    watch = subprocess.Popen([sys.executable, "-m", "lbgen", "-c", str(s.config_path), "watch", "--interval", "1h"],
                             stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        lab.wait_for(lambda: "event=apply" in (tmp / f"{kind}-watch.log").read_text(), timeout=30,
                     what="watch's first apply")
        switch = subprocess.run([sys.executable, "-m", "lbgen", "-c", str(s.config_path), "switch", "--env", "green"],
                                capture_output=True, text=True, env=env)
        if switch.returncode != 0:
            raise SystemExit(f"switch failed: {switch.stderr.strip()}")
        figures = [one_recreation(s) for _ in range(runs)]
    finally:
        watch.terminate()
        watch.wait(10)
        log.close()
    for i, (up, green, blue) in enumerate(figures, 1):
        print(f"{kind:8} run {i}: proxy up {up * 1000:6.0f} ms   green served {green * 1000:6.0f} ms   "
              f"blue answers {blue}")
    ups, greens = [f[0] for f in figures], [f[1] for f in figures]
    print(f"{kind:8} median: proxy up {statistics.median(ups) * 1000:.0f} ms, green served "
          f"{statistics.median(greens) * 1000:.0f} ms after start (lbgen adds "
          f"{(statistics.median(greens) - statistics.median(ups)) * 1000:.0f} ms); "
          f"blue answers in all runs: {sum(f[2] for f in figures)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", choices=["nginx", "haproxy", "both"], default="both")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lab = open_lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in (["nginx", "haproxy"] if args.proxy == "both" else [args.proxy]):
                (Path(tmp) / kind).mkdir()
                run_kind(kind, args.runs, lab, Path(tmp))
    finally:
        lab.close()


if __name__ == "__main__":
    main()
