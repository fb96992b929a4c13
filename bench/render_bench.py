#!/usr/bin/env python3
"""`lbgen render --from-file` of 5,000 backends in 100 services: wall time of the whole command
(median of several runs), whether the result passes the real `nginx -t` (without a warning) /
`haproxy -c`, and whether every backend's address is in it. `--shape` also renders a tenth of the
backends and services and prints the ratio (linear: 10x the input costs about 10x the time, never 100x).

    python3 bench/render_bench.py [--runs 5] [--backends 5000] [--services 100] [--shape]

Absolute times depend on the machine: `python -c 'import click'` is timed in the same run as a yardstick.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _compiled import LBGEN, ensure_compiled


def write_inputs(tmp: Path, kind: str, services: int, backends: int) -> tuple[Path, Path]:
    lines = ["network: bench-net", "proxy:", f"  kind: {kind}", "  container: edge", "services:"]
    for s in range(services):
        lines += [f"  svc{s:03d}:", "    listen: 80", f"    hosts: [svc{s:03d}.example.com]",
                  "    algorithm: least_conn", "    default_env: blue"]
    config = tmp / f"lbgen-{kind}.yaml"
    config.write_text("\n".join(lines) + "\n")
    per = backends // services
    inventory = {"backends": [
        {"service": f"svc{s:03d}", "env": "blue" if i % 2 == 0 else "green", "name": f"svc{s:03d}-{i}",
         "address": f"10.{s // 250}.{s % 250}.{i + 1}", "port": 8080, "weight": 1 + i % 3}
        for s in range(services) for i in range(per)
    ]}
    inv = tmp / "inventory.json"
    inv.write_text(json.dumps(inventory))
    return config, inv


def nginx_ok(conf: Path, tmp: Path) -> bool:
    main = tmp / "nginx.conf"
    main.write_text(f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
                    f"http {{\n  include {conf};\n}}\n")  # lbgen's file sizes the server names' hash
    proc = subprocess.run(["nginx", "-t", "-p", str(tmp), "-c", str(main)], capture_output=True, text=True)
    if proc.returncode or "[warn]" in proc.stderr:
        print(proc.stderr, file=sys.stderr)
    return proc.returncode == 0 and "[warn]" not in proc.stderr


def haproxy_ok(conf: Path) -> bool:
    proc = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout, proc.stderr, file=sys.stderr)
    return proc.returncode == 0


def all_addresses_in(out: Path, inv: Path) -> bool:
    """Every backend of the active env (blue, every service's default_env) is routed; green's are not."""
    text = out.read_text()
    return all((f"{b['address']}:{b['port']}" in text) == (b["env"] == "blue")
               for b in json.loads(inv.read_text())["backends"])


def timed(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})
        times.append(time.perf_counter() - start)
    return times


def render_once(tmp: Path, kind: str, services: int, backends: int, runs: int) -> float:
    config, inv = write_inputs(tmp, kind, services, backends)
    out = tmp / f"out-{kind}.conf"
    times = timed([LBGEN, "-c", str(config), "render", "--from-file", str(inv), "-o", str(out)], runs)
    valid = nginx_ok(out, tmp) if kind == "nginx" else haproxy_ok(out)
    print(f"render --from-file {kind}: {backends} backends / {services} services: "
          f"median {statistics.median(times):.3f}s min {min(times):.3f}s max {max(times):.3f}s "
          f"({runs} runs); {out.stat().st_size // 1024} KiB; validator: {'ok' if valid else 'FAILED'}; "
          f"every blue backend's address in it, no green one: {'yes' if all_addresses_in(out, inv) else 'NO'}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", type=int, default=5000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--shape", action="store_true", help="also a tenth of the input, and the ratio")
    args = parser.parse_args()
    ensure_compiled()  # lbgen timed as installed (bytecode), see _compiled.py
    yardstick = statistics.median(timed([sys.executable, "-c", "import click"], args.runs))
    print(f"yardstick: python -c 'import click' median {yardstick:.3f}s")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in ("nginx", "haproxy"):
            full = render_once(tmp, kind, args.services, args.backends, args.runs)
            if args.shape:
                tenth = render_once(tmp, kind, max(1, args.services // 10), args.backends // 10, args.runs)
                print(f"  {kind}: 10x the backends and services cost {full / tenth:.1f}x the time")


if __name__ == "__main__":
    main()
