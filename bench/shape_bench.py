#!/usr/bin/env python3
"""The shape of `lbgen apply`, `lbgen status` and `lbgen health` with many services: each command at N
services and at 10N (default 100 and 1,000, each with `--backends` blue and as many green backends), the
median wall time of each and the CPU time lbgen's process spent (less at the mercy of other load on a shared
machine), and their ratios (linear: 10x the input costs at most about 10x the time).

    python3 bench/shape_bench.py [--proxy nginx|haproxy] [--services 100] [--backends 2] [--runs 3]

What is real and what is fake:

- real: lbgen's own code, whole commands, through the click CLI (`lbgen -c lbgen.yaml apply --json`,
  `status`, `health`, `health --apply`, run in this process with click's CliRunner: the command path a user
  runs, without Python's start-up); the render; the install script (tests/fakeproxy.py runs the real sh
  script over a temp copy of the proxy's files); every HTTP request lbgen sends: the health checks reach one
  real HTTP endpoint per backend, at its own loopback address (127.1.0.1, 127.1.0.2, ...: only 127.0.0.0/8,
  served by a child process), and the verification after a reload asks a real HTTP status listener on
  127.0.0.1.
- fake: the container engine (tests/fakes.py's FakeEngine, through tests/fakeproxy.py's FakeProxy): the
  containers and their labels, the proxy's files, exec and signals. The fake proxy accepts every config
  (its `nginx -t`/`haproxy -c` is not run in the timed commands), a reload makes it serve the installed
  generation at once, and HAProxy's runtime API is emulated. Docker's own per-call costs (about 45-55 ms
  per exec or archive, bench/apply_bench.py) and the proxy's own validation and reload are not in these
  figures; the fake's work is (copying the proxy's files for the install script, reading the generation
  of the file on a reload: the "reload" phase), and grows with the config. After the timed runs, the config the fake proxy holds is checked once by the real `nginx -t` /
  `haproxy -c` on this host, as bench/render_bench.py does.

The rows: `apply` with a change (one backend's weight label flips between runs: nginx reloads, HAProxy
takes it through its runtime API), `apply` with nothing to change, `status`, `health` (one pass of checks
over the active env, blue) and `health --apply` (the pass, then the counts folded and a converge). Absolute
times depend on the machine: `python -c 'import click'` is timed in the same run as a yardstick.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from _compiled import ensure_compiled  # noqa: E402
from render_bench import haproxy_ok, nginx_ok, timed  # noqa: E402

HEALTH = "{path: /health, interval: 1s, timeout: 2s, rise: 2, fall: 2}"


def backend_address(k: int) -> str:
    """The k-th backend's own loopback address: 127.1.0.1, ... 127.1.0.250, 127.1.1.1, ... (never 127.0.0.x)."""
    return f"127.{1 + k // 62500}.{(k // 250) % 250}.{k % 250 + 1}"


# --- the backends: one real HTTP endpoint per backend, in a child process ----------------------------------

async def _serve(addresses: list[str], port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                         b"Connection: close\r\n\r\nok\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(answer, address, port, backlog=64) for address in addresses]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin (or dies)
    for server in servers:
        server.close()


def serve_backends() -> None:
    """`--serve COUNT PORT`: answer 200 on every backend's address at PORT until stdin closes."""
    count, port = int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    asyncio.run(_serve([backend_address(k) for k in range(count)], port))


def start_backends(count: int) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:  # a port free on the first backend address; the child binds it on every one
        s.bind((backend_address(0), 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(count), str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit(f"the backends' HTTP endpoints did not start (exit {child.wait()})")
    return child, port


# --- the proxy's status listener: what the fake proxy serves, over real HTTP on 127.0.0.1 --------------------

class StatusListener:
    """The proxy's lbgen status listener: answers `lbgen generation=G` for the generation the current
    FakeProxy serves (its reload sets it), like the templates' status location."""

    def __init__(self) -> None:
        self.proxy: Any = None
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                serving = listener.proxy.serving if listener.proxy is not None else None
                body = f"lbgen generation={serving}\n".encode() if serving else b"no lbgen config\n"
                self.send_response(200 if serving else 404)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --- one set-up: N services on a fake engine ------------------------------------------------------------------

def config_text(kind: str, services: int, status_port: int) -> str:
    lines = ["network: lbnet", f"proxy: {{kind: {kind}, container: proxy, status_port: {status_port}}}", "services:"]
    for s in range(services):
        lines += [f"  svc{s:04d}:", "    listen: 80", f"    hosts: [svc{s:04d}.example.com]",
                  "    default_env: blue", f"    health: {HEALTH}"]
    return "\n".join(lines) + "\n"


def version_handler(text: str) -> Callable[..., Any]:
    from lbgen.engine import ExecResult

    return lambda engine, container, argv: ExecResult(0 if argv[1:] == ["-v"] else 1, text)


def build(kind: str, services: int, per_env: int, port: int, status: StatusListener, tmp: Path) -> tuple[Any, Path]:
    """A FakeProxy whose engine holds `services` services with `per_env` blue and green backends each (the
    k-th backend at backend_address(k):port), their active env (blue) on record; and lbgen.yaml."""
    from fakeproxy import FakeProxy

    text = config_text(kind, services, status.port)
    path = tmp / f"lbgen-{kind}-{services}.yaml"
    path.write_text(text)
    fp = FakeProxy(kind, text)
    fp.engine.update("proxy", networks={"lbnet": "127.0.0.1"})  # its status listener is the one above
    fp.engine.exec_handlers["nginx"] = version_handler("nginx version: nginx/1.22.1")
    fp.engine.exec_handlers["haproxy"] = version_handler("HAProxy version 2.6.12-1 2023/03/20")
    k = 0
    for s in range(services):
        for env in ("blue", "green"):
            for i in range(per_env):
                fp.engine.add_backend(f"svc{s:04d}-{env}-{i + 1}", f"svc{s:04d}", env, network="lbnet",
                                      address=backend_address(k), port=port)
                k += 1
    fp.record(**{f"svc{s:04d}": "blue" for s in range(services)})
    status.proxy = fp
    return fp, path


# --- timing the commands ---------------------------------------------------------------------------------------

class Commands:
    """The CLI, in this process, with the Docker engine it would build replaced by the fake one."""

    def __init__(self) -> None:
        from click.testing import CliRunner

        import lbgen.docker_engine
        from lbgen.cli import cli

        self.cli = cli
        self.runner = CliRunner()
        self.engine: Any = None
        lbgen.docker_engine.DockerEngine = lambda *args, **kwargs: self.engine  # type: ignore[assignment,misc]

    def run(self, config: Path, *args: str) -> tuple[float, float, str]:
        """Wall seconds, CPU seconds of this process (lbgen's threads; the backends run in another), output."""
        start, cpu = time.perf_counter(), time.process_time()
        result = self.runner.invoke(self.cli, ["-c", str(config), *args], catch_exceptions=False,
                                    env={"DOCKER_HOST": None, "LBGEN_CHECKS": None})
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if result.exit_code != 0:
            raise SystemExit(f"lbgen {' '.join(args)} exited {result.exit_code}: {result.output[-2000:]}")
        return elapsed, cpu, result.output


ROWS = ("apply (a change)", "apply (no change)", "status", "health", "health --apply")


def measure(cmds: Commands, kind: str, services: int, per_env: int, port: int, status: StatusListener,
            tmp: Path, runs: int) -> tuple[dict[str, tuple[float, float]], Any]:
    """Median wall and CPU seconds per row, and the FakeProxy (for the checks afterwards)."""
    fp, config = build(kind, services, per_env, port, status, tmp)
    cmds.engine = fp.engine
    backends = services * 2 * per_env
    # Untimed first pass: the first install, and the templates compiled (once per process, not per size).
    for command in (["apply"], ["status"], ["health"]):
        cmds.run(config, *command)
    times: dict[str, list[tuple[float, float]]] = {row: [] for row in ROWS}
    phases: list[dict[str, float]] = []
    labels = dict(fp.engine.get_container("svc0000-blue-1").labels)
    for r in range(runs):
        fp.engine.update("svc0000-blue-1", labels={**labels, "lbgen.weight": str(2 + r % 2)})
        elapsed, cpu, out = cmds.run(config, "apply", "--json")
        result = json.loads(out)
        assert result["changed"], out
        times["apply (a change)"].append((elapsed, cpu))
        phases.append(result["timings"])
        elapsed, cpu, out = cmds.run(config, "apply", "--json")
        assert not json.loads(out)["changed"], out
        times["apply (no change)"].append((elapsed, cpu))
        elapsed, cpu, out = cmds.run(config, "status")
        assert out.count(" healthy (HTTP 200)") == backends and "OUT OF SYNC" not in out, out[-2000:]
        times["status"].append((elapsed, cpu))
        elapsed, cpu, out = cmds.run(config, "health")
        assert out.startswith("LBGEN OK"), out[:500]
        times["health"].append((elapsed, cpu))
        elapsed, cpu, out = cmds.run(config, "health", "--apply")
        assert out.startswith("LBGEN OK"), out[:500]
        times["health --apply"].append((elapsed, cpu))
    medians = {row: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for row, t in times.items()}
    names = [n for n in phases[0] if n != "total"]
    phase_medians = {n: statistics.median(p.get(n, 0.0) for p in phases) for n in names}
    print(f"{kind}: {services} services, {backends} backends (median of {runs}; wall, then lbgen's CPU):")
    for row in ROWS:
        print(f"  {row:<18} {medians[row][0]:.3f}s (cpu {medians[row][1]:.3f}s)")
    print("  apply's phases: " + ", ".join(f"{n} {v * 1000:.0f} ms" for n, v in phase_medians.items() if v >= 0.0005))
    return medians, fp


def validate(fp: Any, kind: str, services: int, per_env: int, port: int, tmp: Path) -> None:
    """The config the fake proxy was left with: the real validator's verdict, and whether it routes every
    blue backend and no green one."""
    text = (fp.live() or b"").decode()
    conf = tmp / f"installed-{kind}.conf"
    conf.write_text(text)
    valid = nginx_ok(conf, tmp) if kind == "nginx" else haproxy_ok(conf)
    k, routed = 0, True
    for _ in range(services):
        for env in ("blue", "green"):
            for _ in range(per_env):
                routed &= (f"{backend_address(k)}:{port}" in text) == (env == "blue")
                k += 1
    print(f"  installed config ({len(text) // 1024} KiB): {'nginx -t' if kind == 'nginx' else 'haproxy -c'} "
          f"{'ok' if valid else 'FAILED'}; every blue backend routed, no green one: {'yes' if routed else 'NO'}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve_backends()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], default="nginx")
    parser.add_argument("--services", type=int, default=100, help="N: the small size (the large one is 10N)")
    parser.add_argument("--backends", type=int, default=2, help="backends per env (blue and green) per service")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_compiled()  # lbgen timed as installed (bytecode), see _compiled.py
    yardstick = statistics.median(timed([sys.executable, "-c", "import click"], args.runs))
    print(f"yardstick: python -c 'import click' median {yardstick:.3f}s; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sizes = (args.services, args.services * 10)
    child, port = start_backends(sizes[-1] * 2 * args.backends)
    status = StatusListener()
    cmds = Commands()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            results = []
            for services in sizes:
                medians, fp = measure(cmds, args.proxy, services, args.backends, port, status, tmp, args.runs)
                validate(fp, args.proxy, services, args.backends, port, tmp)
                results.append(medians)
            small, large = results
            print(f"{args.proxy}: 10x the services ({sizes[0]} -> {sizes[1]}) cost (wall; lbgen's CPU), load average "
                  f"now {' '.join(f'{x:.1f}' for x in os.getloadavg())}:")
            for row in ROWS:
                (w1, c1), (w2, c2) = small[row], large[row]
                print(f"  {row:<18} {w1:.3f}s -> {w2:.3f}s  {w2 / w1:.1f}x;  cpu {c1:.3f}s -> {c2:.3f}s  {c2 / c1:.1f}x")
    finally:
        status.server.shutdown()
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
