#!/usr/bin/env python3
"""HAProxy with and without the runtime API, side by side: `lbgen watch` in front of HAProxy with
`proxy.spare_servers: 64` (changes of servers through the runtime API) and with `spare_servers: 0` (every
change reloads), the same backends, under load from clients that never retry:

    python3 bench/haproxy_runtime.py [--burst 50] [--workers 4] [--spares 64]

1. a burst of --burst backend starts (10 parallel `docker run`s); 2. a scale down (half of them stopped);
3. a health ejection (one backend's /health answers 503 until `lbgen health --apply`'s hysteresis ejects
it) and its re-admission. For each: HAProxy reloads (new worker processes under its master, sampled every
20 ms, and watch's `event=apply ... via=reload` lines), runtime changes (`via=runtime`
lines), and failed requests of the non-retrying clients: a Python loop per worker on one keep-alive
connection that counts every error and opens a new connection, and `wrk -c8` when installed (its socket
errors and non-2xx answers).
"""
from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _compiled import LBGEN
from _lab import open_lab, write_config
from loadgen import Wrk

from lbgen.docker_engine import DockerEngine


class NoRetry:
    """Keep-alive GETs that are never retried: any error (a closed connection included) counts."""

    def __init__(self, host: str, workers: int) -> None:
        self.host = host
        self.workers = workers
        self.sent = self.failed = 0
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(workers)]

    def start(self) -> NoRetry:
        for t in self.threads:
            t.start()
        return self

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, 80, timeout=5)
        while not self.stop_flag.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                error = f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as e:
                ok, error = False, type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection(self.host, 80, timeout=5)
            with self.lock:
                self.sent += 1
                if not ok:
                    self.failed += 1
                    self.errors[error] = self.errors.get(error, 0) + 1
            time.sleep(0.002)
        conn.close()

    def stop(self) -> str:
        self.stop_flag.set()
        for t in self.threads:
            t.join()
        errors = f" ({', '.join(f'{k} {v}' for k, v in self.errors.items())})" if self.errors else ""
        return f"{self.failed}/{self.sent}{errors}"




class PidWatch:
    """HAProxy's workers (the children of its master, PID 1), sampled every 20 ms through an exec: each new
    worker is a reload."""

    def __init__(self, engine: DockerEngine, container: str) -> None:
        self.engine = engine
        self.container = container
        self.seen: set[str] = set()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.sample()
        self.thread.start()

    def sample(self) -> None:
        out = self.engine.exec(self.container, ["cat", "/proc/1/task/1/children"]).output
        self.seen.update(out.split())

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.sample()
            time.sleep(0.02)

    def mark(self) -> int:
        return len(self.seen)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join()


def via_counts(log: Path) -> tuple[int, int]:
    text = log.read_text(errors="replace")
    return text.count("via=runtime"), text.count("via=reload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--spares", type=int, default=64)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="haproxy-runtime-"))
    lab = open_lab()
    procs: list[subprocess.Popen] = []
    engine = DockerEngine()
    try:
        for spares in (args.spares, 0):
            net, subnet = lab.network(f"rt{spares}")
            backend = lambda **kw: lab.backend(net, "web", "blue", **kw)  # noqa: E731
            base = [backend() for _ in range(3)]
            proxy = lab.haproxy_proxy(net)
            config = write_config(tmp / f"lbgen-{spares}.yaml", lab, net, proxy.name, "haproxy")
            text = config.read_text().replace(f"container: {proxy.name}}}",
                                              f"container: {proxy.name}, spare_servers: {spares}}}")
            config.write_text(text)
            subprocess.run([LBGEN, "-c", str(config), "apply"], check=True, capture_output=True)
            log = tmp / f"watch-{spares}.log"
            proc = subprocess.Popen([LBGEN, "-c", str(config), "watch"], stdout=subprocess.DEVNULL,
                                    stderr=log.open("wb"))
            procs.append(proc)
            host = lab.ip(proxy, net)
            pids = PidWatch(engine, proxy.name)
            time.sleep(2)
            print(f"\n== HAProxy, proxy.spare_servers: {spares} ({'runtime API' if spares else 'reloads only'}); "
                  f"network {net} ({subnet}); {args.workers} non-retrying keep-alive clients"
                  f"{' + wrk -c8' if shutil.which('wrk') else ''}")

            def phase(name: str, action) -> None:
                load, wrk = NoRetry(host, args.workers).start(), Wrk(f"http://{host}/")
                time.sleep(1)
                mark, (r0, l0) = pids.mark(), via_counts(log)
                t0 = time.monotonic()
                detail = action()
                took = time.monotonic() - t0
                time.sleep(3)  # trailing applies land
                r1, l1 = via_counts(log)
                failed, wrk_out = load.stop(), wrk.stop()
                print(f"  [{name}] {detail} in {took:.2f}s: {pids.mark() - mark} reloads (new workers), "
                      f"applies: {l1 - l0} via=reload, "
                      f"{r1 - r0} via=runtime; failed/sent {failed}; wrk: {wrk_out}")

            names = [f"burst-{i}" for i in range(args.burst)]

            def burst() -> str:
                with ThreadPoolExecutor(10) as pool:
                    # DRAIN: a stopped backend keeps serving 10 s after SIGTERM (as an app that drains
                    # does), so the scale down measures the proxy's change, not the stop's race.
                    list(pool.map(lambda n: backend(name=f"{n}-{spares}", wait=False, env_vars={"DRAIN": "10"}),
                                  names))
                wanted = {lab.prefix + f"{n}-{spares}" for n in names}
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    live = engine.read_file(proxy.name, "/usr/local/etc/haproxy/haproxy.cfg") or b""
                    pool_lines = " ".join(line for line in live.decode().splitlines() if line.startswith("# lbgen-pool:"))
                    if all(w in pool_lines.split() for w in wanted):
                        return f"{args.burst} starts, all routed"
                    time.sleep(0.05)
                return f"{args.burst} starts, NOT all routed within 120s"

            def scale_down() -> str:
                victims = [c for c in lab.client.containers.list(filters={"name": "burst-"})
                           if c.name.endswith(f"-{spares}")][: args.burst // 2]
                with ThreadPoolExecutor(10) as pool:
                    list(pool.map(lambda c: c.stop(timeout=20), victims))
                return f"{len(victims)} `docker stop`s (each backend drains 10 s)"

            def ejection() -> str:
                sick = base[0]
                ip = lab.ip(sick, net)
                lab.http_get(f"http://{ip}:8080/admin/health?status=503")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    live = (engine.read_file(proxy.name, "/usr/local/etc/haproxy/haproxy.cfg") or b"").decode()
                    if f"server {sick.name} {ip}:8080" not in live:
                        break
                    time.sleep(0.05)
                lab.http_get(f"http://{ip}:8080/admin/health?status=200")
                while time.monotonic() < deadline:
                    live = (engine.read_file(proxy.name, "/usr/local/etc/haproxy/haproxy.cfg") or b"").decode()
                    if f"server {sick.name} {ip}:8080" in live:
                        return "1 backend ejected (503) and re-admitted"
                    time.sleep(0.05)
                return "1 backend ejected, NOT re-admitted within 60s"

            phase("burst", burst)
            phase("scale down", scale_down)
            phase("ejection", ejection)
            pids.stop()
            proc.terminate()
            proc.wait(timeout=15)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
