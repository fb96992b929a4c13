#!/usr/bin/env python3
"""A blue-green cutover under sustained keep-alive load: requests sent, failures, and each switch's
duration split into gate / render+install+validate / reload / verify; plus the bare `docker exec`
validate+reload that everything after the gate replaces. `wrk -t2 -c8` (when installed) runs alongside:
a client that never retries, so every keep-alive connection a reload closes under it is counted. The
load saturates both cores of a small machine, so the comparison with the bare pair is made afterwards,
without load: --switches more switches, each followed by the bare pair (same machine, same moment).

    python3 bench/cutover.py --proxy nginx|haproxy [--switches 6] [--workers 4]

Health settings as in the target: rise 2, interval 0.5s. Load goes only to the proxy container on the
network this script creates.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _compiled import LBGEN
from _lab import baseline_commands, open_lab, timed, write_config
from loadgen import Load, Wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--switches", type=int, default=6, help="switches, alternating green/blue")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    lab = open_lab()
    try:
        net, _ = lab.network("cutover")
        proxy = lab.nginx_proxy(net) if args.proxy == "nginx" else lab.haproxy_proxy(net)
        for env in ("blue", "green"):
            for _ in range(2):
                lab.backend(net, "web", env)
        config = write_config(Path(tempfile.mkdtemp()) / "lbgen.yaml", lab, net, proxy.name, args.proxy,
                              health="{path: /health, interval: 500ms, timeout: 1s, rise: 2, fall: 2}")
        timed([LBGEN, "-c", str(config), "apply"])
        url = f"http://{lab.ip(proxy, net)}/"
        load = Load(url, workers=args.workers, max_seconds=300).start()
        wrk = Wrk(url)  # a client that does not retry: each closed keep-alive connection is an error
        wrk_out = "not run"
        rows = []
        try:
            time.sleep(1)
            for i in range(args.switches):
                env = "green" if i % 2 == 0 else "blue"
                elapsed, proc = timed([LBGEN, "-c", str(config), "switch", "--env", env, "--json"])
                data = json.loads(proc.stdout)
                rows.append((elapsed, data["timings"]))
                time.sleep(1)
        finally:
            load.stop()
            wrk_out = wrk.stop()
        base_cmds = baseline_commands(args.proxy, proxy.name)
        idle_rows, bare = [], []
        for i in range(args.switches):  # without load: each switch, then the bare pair
            time.sleep(1)
            env = "blue" if (args.switches + i) % 2 else "green"  # on from where the loaded switches ended
            idle_rows.append(json.loads(timed([LBGEN, "-c", str(config), "switch", "--env", env, "--json"])[1].stdout)
                             ["timings"])
            bare.append(sum(timed(c)[0] for c in base_cmds))
        baseline = statistics.median(bare)
        summary = load.summary()
        med = lambda key: statistics.median(t.get(key, 0.0) for _, t in rows)  # noqa: E731
        for _, t in rows:
            t["render_install_validate"] = sum(t.get(k, 0.0) for k in ("render", "deliver", "validate"))
        post_gate = lambda t: sum(t.get(k, 0.0) for k in ("render", "deliver", "validate", "reload", "verify"))  # noqa: E731
        after_gate = statistics.median(post_gate(t) for _, t in rows)
        idle_after = statistics.median(post_gate(t) for t in idle_rows)
        print(f"{args.proxy}: {len(rows)} switches under load: requests sent {summary['sent']}, "
              f"failed {summary['failed']}, by env {summary['by_env']}")
        if summary["failed"]:
            print(f"  errors: {summary['errors']}")
        print(f"  wrk -t2 -c8 (no retries) over the same switches: {wrk_out}")
        print(f"  whole `lbgen switch` command: median {statistics.median(e for e, _ in rows):.3f}s "
              f"(max {max(e for e, _ in rows):.3f}s)")
        print(f"  split (medians): gate {med('gate'):.3f}s, render+install+validate "
              f"{med('render_install_validate'):.3f}s, reload {med('reload'):.3f}s, verify {med('verify'):.3f}s, "
              f"in-process total {med('total'):.3f}s")
        phases = sorted({k for _, t in rows for k in t} - {"total", "render_install_validate"})
        print("  every phase (medians): " + ", ".join(f"{k} {med(k):.3f}s" for k in phases))
        print(f"  after the gate, under that load: {after_gate:.3f}s")
        print(f"  without load, {len(idle_rows)} switches each followed by the bare pair: after the gate "
              f"{idle_after:.3f}s vs bare docker exec validate+reload {baseline:.3f}s: {idle_after / baseline:.2f}x; "
              f"every phase: " + ", ".join(f"{k} {statistics.median(t.get(k, 0.0) for t in idle_rows):.3f}s"
                                          for k in sorted({k for t in idle_rows for k in t} - {"total"})))
    finally:
        lab.close()


if __name__ == "__main__":
    main()
