#!/usr/bin/env python3
"""`lbgen apply` when something changed, against the bare `docker exec <proxy> nginx -t` plus
`docker exec <proxy> nginx -s reload` it replaces (whole commands, median of N runs, interleaved).

The bare pair returns as soon as the signal is sent; lbgen returns when the proxy serves the new config
on every fresh connection. So the same pair is also timed until then ("bare pair + served"): before
it, the generation in the live file is changed (untimed), and after the reload lbgen's status listener is
polled from this host until 3 fresh connections in a row answer the new one, as lbgen's verify does.
On nginx that wait is mostly nginx's own: its master starts the new workers and tells the old ones to
stop accepting 100 ms later (`ngx_msleep(100)` in ngx_master_process_cycle).

    python3 bench/apply_bench.py [--runs 10] [--proxy nginx|haproxy] [--backends 4]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _compiled import LBGEN
from _lab import baseline_commands, open_lab, timed, write_config
from dockerlab import http_get

CONFIG_PATHS = {"nginx": "/etc/nginx/conf.d/lbgen.conf", "haproxy": "/usr/local/etc/haproxy/haproxy.cfg"}


def generation(url: str) -> str | None:
    try:
        _, body = http_get(url, timeout=2.0)
    except OSError:
        return None
    found = re.search(r"generation=(\w+)", body)
    return found.group(1) if found else None


def pair_until_served(cmds: list[list[str]], proxy: str, kind: str, url: str, run: int) -> float:
    """The bare pair, then until 3 fresh connections in a row answer a generation changed just before."""
    old = generation(url)
    if old is None:
        raise SystemExit(f"no generation from {url}")
    new = f"{run:04d}{time.time_ns() % 10**8:08d}"
    subprocess.run(["docker", "exec", proxy, "sed", "-i", f"s/{old}/{new}/g", CONFIG_PATHS[kind]], check=True)
    start = time.perf_counter()
    for cmd in cmds:
        timed(cmd)
    in_a_row = 0
    while in_a_row < 3:
        in_a_row = in_a_row + 1 if generation(url) == new else 0
        if time.perf_counter() - start > 10:
            raise SystemExit(f"{kind} did not serve generation {new} within 10 s")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--backends", type=int, default=4)
    args = parser.parse_args()
    lab = open_lab()
    try:
        net, _ = lab.network("bench")
        proxy = lab.nginx_proxy(net) if args.proxy == "nginx" else lab.haproxy_proxy(net)
        for _ in range(args.backends):
            lab.backend(net, "web", "blue")
        tmp = Path(tempfile.mkdtemp())
        # Two configs that differ in one timeout, so every apply has something to change.
        configs = [write_config(tmp / f"lbgen{i}.yaml", lab, net, proxy.name, args.proxy,
                                extra=f"    read_timeout: {30 + i}s\n") for i in range(2)]
        env = dict(os.environ)
        timed([LBGEN, "-c", str(configs[1]), "apply"], env)
        baseline_cmds = baseline_commands(args.proxy, proxy.name)
        url = f"http://{lab.ip(proxy, net)}:9180/lbgen/status"
        applies, baselines, served, phases = [], [], [], []
        for i in range(args.runs):
            elapsed, proc = timed([LBGEN, "-c", str(configs[i % 2]), "apply", "--json"], env)
            result = json.loads(proc.stdout)
            assert result["changed"], proc.stdout
            applies.append(elapsed)
            phases.append(result["timings"])
            baselines.append(sum(timed(cmd)[0] for cmd in baseline_cmds))
            served.append(pair_until_served(baseline_cmds, proxy.name, args.proxy, url, i))
        a, b, c = statistics.median(applies), statistics.median(baselines), statistics.median(served)
        print(f"{args.proxy}: lbgen apply (changed) median {a * 1000:.0f} ms; "
              f"bare validate+reload ({' + '.join(c[3] if c[1] == 'exec' else 'docker kill -s USR2' for c in baseline_cmds)}) "
              f"median {b * 1000:.0f} ms; ratio {a / b:.2f}x ({args.runs} runs, {args.backends} backends)")
        print(f"  the bare pair + served (until 3 fresh connections in a row answer the new config): "
              f"median {c * 1000:.0f} ms; lbgen apply / that: {a / c:.2f}x")
        names = list(phases[0])
        print("  inside lbgen (median ms): " + ", ".join(
            f"{n}={statistics.median(p.get(n, 0.0) for p in phases) * 1000:.0f}" for n in names)
            + f"; start-up and the rest: {(a - statistics.median(p['total'] for p in phases)) * 1000:.0f}")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
