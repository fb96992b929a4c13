"""Bench set-up on the real engine, through the test harness (tests/dockerlab.py): everything is labelled
`lbgen-test=<session>` and removed at the end. Traffic goes only to containers on the network made here."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _compiled import ensure_compiled  # noqa: E402
from dockerlab import DockerLab  # noqa: E402


def open_lab() -> DockerLab:
    ensure_compiled()  # lbgen's commands timed as installed (bytecode), see _compiled.py
    return DockerLab.open()


def write_config(path: Path, lab: DockerLab, net: str, proxy_name: str, kind: str, extra: str = "",
                 health: str = "{path: /health, interval: 500ms, timeout: 1s, rise: 2, fall: 2}") -> Path:
    path.write_text(
        f"network: {net}\nlabel_prefix: {lab.label_prefix}\n"
        f"proxy: {{kind: {kind}, container: {proxy_name}}}\n"
        f"services:\n  web:\n    listen: 80\n    default_env: blue\n    health: {health}\n{extra}"
    )
    return path


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc


def baseline_commands(kind: str, proxy_name: str) -> list[list[str]]:
    """The bare validate + reload an apply replaces: `docker exec` the validator, then reload."""
    if kind == "nginx":
        return [["docker", "exec", proxy_name, "nginx", "-t", "-q"],
                ["docker", "exec", proxy_name, "nginx", "-s", "reload"]]
    return [["docker", "exec", proxy_name, "haproxy", "-c", "-q", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
            ["docker", "kill", "-s", "USR2", proxy_name]]
