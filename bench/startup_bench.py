#!/usr/bin/env python3
"""Start-up cost: `lbgen --version` and `lbgen --help` against `python -c 'import click'` in the same
environment (median of N runs each, interleaved).

    python3 bench/startup_bench.py [--runs 20]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _compiled import LBGEN, ensure_compiled


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_compiled()  # lbgen timed as installed (bytecode), see _compiled.py
    lbgen = LBGEN
    commands = {
        "python -c 'import click'": [sys.executable, "-c", "import click"],
        "lbgen --version": [lbgen, "--version"],
        "lbgen --help": [lbgen, "--help"],
        "python -m lbgen --version": [sys.executable, "-m", "lbgen", "--version"],
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            samples[name].append(timed(cmd))
    base = statistics.median(samples["python -c 'import click'"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<28} median {median * 1000:7.1f} ms  ({median / base:.2f}x import click)")


if __name__ == "__main__":
    main()
