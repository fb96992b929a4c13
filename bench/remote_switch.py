#!/usr/bin/env python3
"""A switch run from a remote runner (a container with the engine's socket but off the app network, so
lbgen checks through the engine: docs/remote.md) against the same switch run on the host, in one run.

    python3 bench/remote_switch.py --proxy nginx|haproxy [--switches 6]

Both sides run `python3 -m lbgen switch` as a new process (start-up included), alternating green/blue.
Printed: the wall time per switch and lbgen's own split (gate / render+install+validate / reload / verify).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from _lab import ROOT, open_lab, write_config

SPLIT = re.compile(r"took=([\d.]+)s \(gate=([\d.]+)s render\+install\+validate=([\d.]+)s reload=([\d.]+)s "
                   r"verify=([\d.]+)s\)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--switches", type=int, default=6, help="per side, alternating green/blue")
    args = parser.parse_args()
    lab = open_lab()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            net, _ = lab.network("app")
            proxy = lab.nginx_proxy(net) if args.proxy == "nginx" else lab.haproxy_proxy(net)
            for env in ("blue", "green"):
                for _ in range(2):
                    lab.backend(net, "web", env)
            config = write_config(work / "lbgen.yaml", lab, net, proxy.name, args.proxy,
                                  health="{path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}")
            shutil.copytree(ROOT / "lbgen", work / "src" / "lbgen", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(ROOT / "templates", work / "src" / "lbgen" / "templates")
            own_net, _ = lab.network("runner")
            runner = lab.container(own_net, "runner", command=["sleep", "infinity"], binds={
                "/var/run/docker.sock": "/var/run/docker.sock:rw",
                sysconfig.get_paths()["purelib"]: "/runner/site:ro",
                str(work / "src"): "/runner/src:ro", str(work): "/runner/cfg:ro"})
            env = {**os.environ, "LBGEN_CONFIG": str(config)}
            subprocess.run([sys.executable, "-m", "lbgen", "apply"], env=env, check=True, capture_output=True)

            def on_host(target: str) -> tuple[float, str, str]:
                start = time.perf_counter()
                p = subprocess.run([sys.executable, "-m", "lbgen", "switch", "--env", target], env=env,
                                   capture_output=True, text=True)
                return time.perf_counter() - start, p.stdout, p.stderr

            def remote(target: str) -> tuple[float, str, str]:
                start = time.perf_counter()
                r = runner.exec_run(["python3", "-m", "lbgen", "-c", "/runner/cfg/lbgen.yaml", "switch", "--env",
                                     target], environment={"PYTHONPATH": "/runner/src:/runner/site"}, demux=True)
                out, err = r.output
                return time.perf_counter() - start, (out or b"").decode(), (err or b"").decode()

            results: dict[str, list[tuple[float, ...]]] = {"host": [], "remote": []}
            for _ in range(args.switches // 2 or 1):
                for name, run in (("host", on_host), ("remote", remote)):
                    for target in ("green", "blue"):
                        wall, out, err = run(target)
                        match = SPLIT.search(out)
                        if not match:
                            raise SystemExit(f"{name} switch to {target} failed: {out}{err}")
                        if name == "remote" and "via=engine" not in err:
                            raise SystemExit("the remote runner did not check through the engine: " + err)
                        results[name].append((wall, *map(float, match.groups())))
            print(f"proxy={args.proxy} switches={args.switches} per side (median; min-max wall)")
            for name, rows in results.items():
                cols = list(zip(*rows))
                med = [statistics.median(c) for c in cols]
                print(f"  {name:<6} wall={med[0]:.2f}s ({min(cols[0]):.2f}-{max(cols[0]):.2f}) took={med[1]:.2f}s "
                      f"gate={med[2]:.2f}s render+install+validate={med[3]:.2f}s reload={med[4]:.2f}s "
                      f"verify={med[5]:.2f}s")
    finally:
        lab.close()


if __name__ == "__main__":
    main()
