"""An lbgen set-up on the real engine for integration tests: a network, a proxy of either kind, blue and
green backends, an lbgen.yaml, and the core object driving them. Everything is made through the lab,
so it is labelled and removed when the test ends."""
from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lbgen.app import Lbgen
from lbgen.config import load_config

HAPROXY_CFG = "/usr/local/etc/haproxy/haproxy.cfg"
NGINX_CFG = "/etc/nginx/conf.d/lbgen.conf"


class Scenario:
    def __init__(self, lab: Any, tmp_path: Path, kind: str, blue: int = 2, green: int = 2,
                 service_yaml: str = "", top_yaml: str = "", backend_env: dict | None = None,
                 proxy_yaml: str = "", backend_kw: dict | None = None, proxy: Any = None) -> None:
        """`proxy`: a function of the network making the proxy container (default: the test image's)."""
        self.lab = lab
        self.kind = kind
        self.tmp_path = tmp_path
        self.net, self.subnet = lab.network("app")
        self.backends = {"blue": [], "green": []}
        # The proxy and the backends start at once (each start is mostly the engine's wait, and each waits
        # for its own readiness); names are chosen here, in order, so they do not depend on the threads.
        make_proxy = proxy or (lab.nginx_proxy if kind == "nginx" else lab.haproxy_proxy)
        kw = {"env_vars": backend_env, **(backend_kw or {})}
        wanted = [(env, lab.backend_name("web", env)) for env, count in (("blue", blue), ("green", green))
                  for _ in range(count)]
        with ThreadPoolExecutor(max_workers=1 + len(wanted)) as pool:
            made_proxy = pool.submit(make_proxy, self.net)
            made = [(env, pool.submit(lab.backend, self.net, "web", env, name, **kw)) for env, name in wanted]
            self.proxy = made_proxy.result()
            for env, future in made:
                self.backends[env].append(future.result())
        self.config_path = tmp_path / "lbgen.yaml"
        self.logs: list = []  # lbgen.events.Event
        self.write_config(service_yaml, top_yaml, proxy_yaml)

    def add_backend(self, env: str, **kw: Any) -> Any:
        container = self.lab.backend(self.net, "web", env, **kw)
        self.backends.setdefault(env, []).append(container)
        return container

    def write_config(self, service_yaml: str = "", top_yaml: str = "", proxy_yaml: str = "") -> None:
        service_yaml = service_yaml or """\
            default_env: blue
            health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}
        """
        self.config_path.write_text(
            f"network: {self.net}\n"
            f"label_prefix: {self.lab.label_prefix}\n"
            + textwrap.dedent(top_yaml)
            + f"proxy:\n  kind: {self.kind}\n  container: {self.proxy.name}\n"
            + textwrap.indent(textwrap.dedent(proxy_yaml), "  ")
            + "services:\n  web:\n    listen: 80\n"
            + textwrap.indent(textwrap.dedent(service_yaml), "    ")
        )

    @property
    def config(self) -> Any:
        return load_config(self.config_path)

    def app(self, **kw: Any) -> Lbgen:
        kw.setdefault("log", self.logs.append)
        return Lbgen(self.config, **kw)

    @property
    def proxy_ip(self) -> str:
        return self.lab.ip(self.proxy, self.net)

    @property
    def url(self) -> str:
        return f"http://{self.proxy_ip}/"

    @property
    def config_file(self) -> str:
        return NGINX_CFG if self.kind == "nginx" else HAPROXY_CFG

    def live(self) -> bytes:
        result = self.proxy.exec_run(["cat", self.config_file])
        return result.output if result.exit_code == 0 else b""

    def inode(self) -> str:
        return self.proxy.exec_run(["stat", "-c", "%i", self.config_file]).output.decode().strip()

    def envs_served(self, n: int = 6) -> set[str]:
        """The envs answering n fresh requests through the proxy."""
        seen = set()
        for _ in range(n):
            body = self.lab.wait_http(self.url, timeout=5)
            seen.add(body.split()[0].split("=", 1)[1])
        return seen


# A backend (tests/images/backend.py, unchanged in the image) whose /health passes but whose pages answer
# 500 for one request in `ERROR_EVERY` (default 3): what a canary's analysis must catch.
FLAKY_BACKEND = ["python3", "-c", """
import importlib.machinery, importlib.util, itertools, os, threading
loader = importlib.machinery.SourceFileLoader("backend", "/usr/local/bin/lbgen-test-backend")
backend = importlib.util.module_from_spec(importlib.util.spec_from_loader("backend", loader))
loader.exec_module(backend)
every, count, lock = int(os.environ.get("ERROR_EVERY", "3")), itertools.count(), threading.Lock()
plain = backend.Handler.do_GET
def do_GET(self):
    if not self.path.startswith(("/health", "/admin")):
        with lock:
            n = next(count)
        if n % every == 0:
            return self._send(500, "env=%s name=%s error\\n" % (backend.ENV, backend.NAME))
    return plain(self)
backend.Handler.do_GET = do_GET
backend.main()
"""]
