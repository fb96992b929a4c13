#!/usr/bin/env python3
"""A release script using lbgen as a library: switch a service to the new env once it is healthy, watch it
for a while, and roll back if it stops being healthy. Exit codes are lbgen's own (`lbgen --help`).

    python examples/deploy.py lbgen.yaml web green
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from lbgen import ExitCode, HealthGateFailed, LbgenError, Lbgen, load_config


def deploy(lb: Lbgen, service: str, env: str, watch_for: float = 30.0, every: float = 5.0,
           sleep: Callable[[float], None] = time.sleep) -> int:
    try:
        result = lb.switch(env, service=service, timeout=120, min_healthy="75%")
    except HealthGateFailed as e:
        print(f"not switched: {e}", file=sys.stderr)
        return ExitCode.GATE
    print(f"{result.outcome} {service}: {result.from_env} -> {result.to_env} "
          f"in {result.timings.get('total', 0):.2f}s", file=sys.stderr)
    # A health pass every few seconds; a service without a healthy backend is rolled back at once.
    waited = 0.0
    while waited < watch_for:
        sleep(every)
        waited += every
        report = lb.health(service)
        if report.services and report.services[0].healthy == 0:
            back = lb.rollback(service, force=True)
            print(f"rolled back {service} to {back.to_env}: {report.summary()}", file=sys.stderr)
            return ExitCode.RELOAD
    return ExitCode.OK


def main(argv: list[str]) -> int:
    config_path, service, env = argv
    try:
        return deploy(Lbgen(load_config(config_path)), service, env)
    except LbgenError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
