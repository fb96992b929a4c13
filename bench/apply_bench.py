#!/usr/bin/env python3
"""`lbgen apply` when something changed, against the bare `docker exec <proxy> nginx -t` plus
`docker exec <proxy> nginx -s reload` it replaces (whole commands, median of N runs, interleaved).

    python3 bench/apply_bench.py [--runs 10] [--proxy nginx|haproxy] [--backends 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from _compiled import LBGEN
from _lab import baseline_commands, open_lab, timed, write_config


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
        applies, baselines, phases = [], [], []
        for i in range(args.runs):
            elapsed, proc = timed([LBGEN, "-c", str(configs[i % 2]), "apply", "--json"], env)
            result = json.loads(proc.stdout)
            assert result["changed"], proc.stdout
            applies.append(elapsed)
            phases.append(result["timings"])
            baselines.append(sum(timed(cmd)[0] for cmd in baseline_cmds))
        a, b = statistics.median(applies), statistics.median(baselines)
        print(f"{args.proxy}: lbgen apply (changed) median {a * 1000:.0f} ms; "
              f"bare validate+reload ({' + '.join(c[3] if c[1] == 'exec' else 'docker kill -s USR2' for c in baseline_cmds)}) "
              f"median {b * 1000:.0f} ms; ratio {a / b:.2f}x ({args.runs} runs, {args.backends} backends)")
        names = list(phases[0])
        print("  inside lbgen (median ms): " + ", ".join(
            f"{n}={statistics.median(p.get(n, 0.0) for p in phases) * 1000:.0f}" for n in names)
            + f"; start-up and the rest: {(a - statistics.median(p['total'] for p in phases)) * 1000:.0f}")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
