"""The integration-test harness: real containers and networks on the local Docker engine, all labelled
`lbgen-test=<session id>`, named with a prefix of their test's own (the session lab's for what lives across
tests), and removed by that label afterwards.

Used through the fixtures in conftest.py: `docker_lab` (one per pytest session) and `lab` (one per test,
whose containers and networks are removed when the test ends, pass or fail):

    def test_something(lab):
        net, subnet = lab.network("web")                    # a bridge network on its own 172.30.X.0/24
        blue = lab.backend(net, "web", "blue")              # running and answering /health when returned
        proxy = lab.nginx_proxy(net)
        body = lab.wait_http(f"http://{lab.ip(blue, net)}:8080/", timeout=5)

Traffic only ever goes to loopback and to containers on networks created here. Networks get explicit
subnets inside 172.30.0.0/16 (never a default pool), chosen to avoid the subnets of existing networks.
"""
from __future__ import annotations

import atexit
import hashlib
import itertools
import os
import http.client
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

IMAGES = Path(__file__).resolve().parent / "images"
BUILD_SCRIPT = IMAGES / "build.sh"
LABEL = "lbgen-test"
SCOPE_LABEL = "lbgen-test-scope"
SUBNET_PREFIX = "172.30"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


class LabError(Exception):
    """The harness cannot do what a test asked (no daemon, image build failed, no free subnet)."""


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET url -> (status, body), without any HTTP proxy; ConnectionError/TimeoutError when no answer.

    Same shape as lbgen.health.HttpGet, so it can be handed to lbgen's code as its `get`.
    """
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode("utf-8", errors="replace")
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise TimeoutError(f"timeout after {timeout:g}s") from e
        raise ConnectionError(str(e.reason)) from e
    except http.client.HTTPException as e:  # e.g. IncompleteRead: the proxy went away mid-answer
        raise ConnectionError(f"{type(e).__name__}: {e}") from e
    except (socket.timeout, TimeoutError) as e:
        raise TimeoutError(f"timeout after {timeout:g}s") from e
    except (ConnectionError, OSError) as e:
        raise ConnectionError(str(e)) from e


class DockerLab:
    """Creates labelled test containers and networks; see the module docstring.

    Attributes: `client` (docker.DockerClient), `image` (the test image tag), `session` (the id in the
    `lbgen-test` label), `prefix` (of every container and network name), `labels` (what every object
    this lab creates carries), `label_prefix` (the lbgen label prefix backend() uses by default, unique
    to this lab: give it to DockerSource / lbgen.yaml so other test sessions' backends stay invisible).
    """

    _subnet_lock = threading.Lock()

    def __init__(self, client: Any, image: str, session: str, scope: str | None = None,
                 parent: DockerLab | None = None) -> None:
        self.client = client
        self.api = client.api
        self.image = image
        self.session = session
        self.scope_id = scope
        # Other test sessions share the engine: a label prefix of its own keeps each test's discovery to
        # its own containers (use it as `label_prefix` in the test's lbgen.yaml).
        self.label_prefix = f"lbt{session}" if scope is None else f"lbt{session}t{scope}"
        # Names are the scope's own too: the previous test's containers may still be being removed in the
        # background (close_later) when the next test, or the next parameter, creates the same names.
        self.prefix = f"{self.label_prefix}-"
        self.labels = {LABEL: session} if scope is None else {LABEL: session, SCOPE_LABEL: scope}
        self._root = parent or self
        self._names = itertools.count(1) if parent is None else parent._names
        self._scopes = itertools.count(1) if parent is None else parent._scopes
        self._closed = False
        self._closer: ThreadPoolExecutor | None = None  # the root's: scopes closed by close_later()
        self._pending: list[Any] = []

    # --- opening and closing ------------------------------------------------------------------------

    @classmethod
    def open(cls) -> DockerLab:
        """Check the daemon, build (or reuse) the test image, start a session. LabError when impossible."""
        import docker

        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            client = docker.from_env(timeout=60)
            client.ping()
        except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the tester
            raise LabError(f"integration tests need a Docker daemon, and the one at {where} does not answer "
                           f"({type(e).__name__}: {e}); start dockerd or set DOCKER_HOST") from e
        image = build_image()
        lab = cls(client, image, session=uuid.uuid4().hex[:8])
        atexit.register(lab.close)
        return lab

    def scope(self) -> DockerLab:
        """A child lab for one test: same session and image; close() removes only what it created."""
        return DockerLab(self.client, self.image, self.session, scope=str(next(self._scopes)), parent=self._root)

    def close_later(self, scope: DockerLab) -> None:
        """Close `scope` on a thread of the root lab, so that the next test need not wait for the removals
        (its names, label prefix and subnet are its own). The root's close() waits for every one of them,
        then sweeps everything of the session that is left, whatever went wrong in the background."""
        with self._subnet_lock:
            if self._closer is None:
                self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-close")
            self._pending.append(self._closer.submit(scope.close))

    def close(self) -> None:
        """Remove every container, then every network, carrying this lab's labels. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._closer is not None:
            for pending in self._pending:
                try:
                    pending.result()
                except Exception:  # noqa: BLE001 - the sweep below removes whatever that close left
                    pass
            self._closer.shutdown(wait=True)
        filters = {"label": [f"{k}={v}" for k, v in self.labels.items()]}
        listed = self.api.containers(all=True, filters=filters)
        containers = [c["Id"] for c in listed]
        # State holders and locks lbgen made for this lab's proxies (labelled with the proxy's name).
        names = {n.lstrip("/") for c in listed for n in c.get("Names") or ()}
        containers += [c["Id"] for c in self.api.containers(all=True, filters={"label": "lbgen.state.proxy"})
                       if c["Labels"].get("lbgen.state.proxy") in names]
        if self.scope_id is None:
            # Lock markers lbgen itself created from this test process (a failed test may leave one).
            marker_filters = {"label": [f"lbgen.lock.pid={os.getpid()}", f"lbgen.lock.host={socket.gethostname()}"]}
            containers += [c["Id"] for c in self.api.containers(all=True, filters=marker_filters)]
        self._parallel(self._remove_container, containers)
        networks = [n["Id"] for n in self.api.networks(filters=filters)]
        self._parallel(self._remove_network, networks)
        volumes = [v["Name"] for v in (self.api.volumes(filters=filters) or {}).get("Volumes") or []]
        self._parallel(self._remove_volume, volumes)

    def _remove_volume(self, name: str) -> None:
        import docker

        try:
            self.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass

    def _remove_container(self, container_id: str) -> None:
        import docker

        try:
            self.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):
                raise

    def _remove_network(self, network_id: str) -> None:
        """Remove one of this lab's networks. An endpoint may outlive its container for a while (a removal
        still in progress elsewhere): whatever the network still lists is disconnected by force (every
        container on it is this lab's), for up to 30 s. dockerd 20.10 can also keep a stale endpoint that no
        container holds, for hours (CI saw it twice): such a network is left in place with a warning."""
        import docker

        start = time.monotonic()
        while True:
            try:
                self.api.remove_network(network_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if "active endpoints" not in str(e):
                    raise
                error = e
            try:
                attached = self.api.inspect_network(network_id).get("Containers") or {}
            except docker.errors.NotFound:
                return
            waited = time.monotonic() - start
            if attached and waited > 30:
                raise error
            if not attached and waited > 10:
                warnings.warn(f"test network {network_id[:12]} left in place: dockerd still says it has active "
                              f"endpoints, but no container is attached (a stale endpoint)", stacklevel=2)
                return
            for container in attached:
                try:
                    self.api.disconnect_container_from_network(container, network_id, force=True)
                except docker.errors.APIError:
                    pass  # gone meanwhile, or not disconnectable yet: the next round tries again
            time.sleep(0.2)

    @staticmethod
    def _parallel(function: Any, items: Iterable[str]) -> None:
        items = list(items)
        if len(items) <= 1:
            for item in items:
                function(item)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            list(pool.map(function, items))

    # --- networks -----------------------------------------------------------------------------------

    def network(self, name_suffix: str = "net") -> tuple[str, str]:
        """Create a labelled bridge network on a free 172.30.X.0/24; (name, subnet)."""
        import docker

        name = f"{self.prefix}{name_suffix}-{next(self._names)}"
        start = int(hashlib.sha256(f"{self.session}:{name}".encode()).hexdigest(), 16) % 256
        with self._subnet_lock:
            used = self._used_subnets()
            for offset in range(256):
                subnet = f"{SUBNET_PREFIX}.{(start + offset) % 256}.0/24"
                if subnet in used:
                    continue
                ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
                try:
                    self.api.create_network(name, driver="bridge", ipam=ipam, labels=dict(self.labels))
                except docker.errors.APIError as e:
                    if "overlap" in str(e).lower():  # another test session took it a moment ago
                        continue
                    raise
                return name, subnet
        raise LabError(f"no free /24 left in {SUBNET_PREFIX}.0.0/16 for a test network")

    def _used_subnets(self) -> set[str]:
        used = set()
        for network in self.api.networks():
            for config in ((network.get("IPAM") or {}).get("Config") or []):
                if config.get("Subnet"):
                    used.add(config["Subnet"])
        return used

    # --- volumes ------------------------------------------------------------------------------------

    def volume(self, name_suffix: str = "vol") -> str:
        """A labelled named volume (removed with the lab); its name."""
        name = f"{self.prefix}{name_suffix}-{next(self._names)}"
        self.api.create_volume(name, labels=dict(self.labels))
        return name

    # --- containers ---------------------------------------------------------------------------------

    def container(self, network: str | None, name: str | None = None, *, command: list[str] | None = None,
                  labels: Mapping[str, str] | None = None, env_vars: Mapping[str, str] | None = None,
                  expose: Iterable[int] = (), healthcheck: Any = None, extra_networks: Iterable[str] = (),
                  read_only: bool = False, start: bool = True, image: str | None = None,
                  user: str | None = None, stop_signal: str | None = None,
                  binds: Mapping[str, str] | Iterable[str] | None = None, publish: Iterable[int] = ()) -> Any:
        """A labelled container of the test image (or `image`) on `network` (None: no network at all).
        `command=None` runs the image's own CMD (and ENTRYPOINT). `binds`: host path -> "container
        path:ro|rw" bind mounts, or `-v` specs ("/host/path:/in/container[:ro]", "volume-name:/in/container").
        `publish`: container ports published on 127.0.0.1 only, each on a free host port (read it with
        `container.ports`).

        Returns a docker.models.containers.Container. The name gets this lab's prefix.
        """
        full_name = self.prefix + (name or f"c{next(self._names)}")
        publish = list(publish)
        host_config = self.api.create_host_config(network_mode=network or "none", read_only=read_only,
                                                  binds=(list(binds or ()) if not isinstance(binds, Mapping) else
                                                         [f"{h}:{c}" for h, c in binds.items()]) or None,
                                                  port_bindings={p: ("127.0.0.1",) for p in publish} or None)
        created = self.api.create_container(
            image or self.image, command=command, user=user, stop_signal=stop_signal, name=full_name, labels={**(labels or {}), **self.labels},
            environment=dict(env_vars or {}), ports=list(expose) + publish or None, healthcheck=_healthcheck(healthcheck),
            host_config=host_config, hostname=full_name[:63],
        )
        for extra in extra_networks:
            self.api.connect_container_to_network(created["Id"], extra)
        if start:
            self.api.start(created["Id"])
        return self.client.containers.get(created["Id"])

    def backend(self, network: str | None, service: str, env: str | None = None, name: str | None = None,
                port: int = 8080, labels: Mapping[str, str] | None = None, healthcheck: Any = None,
                env_vars: Mapping[str, str] | None = None, *, prefix: str | None = None, expose: bool = True,
                start: bool = True, wait: bool = True, extra_networks: Iterable[str] = (),
                image: str | None = None, command: list[str] | None = None) -> Any:
        """A tests/images/backend.py container labelled `<prefix>.service`/`<prefix>.env`, serving on `port`.

        `prefix` defaults to this lab's own `label_prefix`, not "lbgen" (see the class docstring).
        The port is exposed (no label needed); `labels` adds or overrides labels. `healthcheck`: a Docker
        test list (e.g. ["CMD", "test", "-e", "/tmp/ready"]; checked every 0.2s, "starting" until it first
        passes) or a full healthcheck dict. With `wait`, returns once /health answers on `network`.
        `image`/`command`: another backend with the same environment variables, e.g.
        `image=lab.derived_image("ws")` (tests/images/ws: WebSockets, ALLOWED_HOSTS) and its CMD.
        """
        name = name or self.backend_name(service, env)
        prefix = prefix or self.label_prefix
        all_labels = {f"{prefix}.service": service}
        if env is not None:
            all_labels[f"{prefix}.env"] = env
        all_labels.update(labels or {})
        environment = {"PORT": str(port), "LBGEN_TEST_ENV": env or "none", "LBGEN_TEST_NAME": self.prefix + name}
        environment.update(env_vars or {})
        if command is None and image is None:
            command = ["/usr/local/bin/lbgen-test-backend"]
        container = self.container(network, name, command=command, image=image, labels=all_labels,
                                   env_vars=environment, expose=[port] if expose else [], healthcheck=healthcheck,
                                   extra_networks=extra_networks, start=start)
        if start and wait and network:
            self.wait_http(f"http://{self.ip(container, network)}:{port}/health", timeout=10, status=None)
        return container

    def backend_name(self, service: str, env: str | None = None) -> str:
        """The name backend() gives by default (without the session prefix): `<service>-<env|all>-<n>`."""
        return f"{service}-{env or 'all'}-{next(self._names)}"

    def nginx_proxy(self, network: str, name: str | None = None, *, labels: Mapping[str, str] | None = None,
                    extra_networks: Iterable[str] = (), wait: bool = True) -> Any:
        """nginx (`nginx -g 'daemon off;'`, PID 1 is the master) with the image's stock nginx.conf, which
        includes /etc/nginx/conf.d/*.conf (empty at first). With `wait`, returns once the master is up."""
        container = self.container(network, name or f"nginx-{next(self._names)}",
                                   command=["nginx", "-g", "daemon off;"], labels=labels, extra_networks=extra_networks)
        if wait:
            self.wait_for(lambda: container.exec_run(["test", "-s", "/run/nginx.pid"]).exit_code == 0,
                          timeout=10, what=f"nginx in {container.name} to start")
        return container

    def haproxy_proxy(self, network: str, name: str | None = None, *, labels: Mapping[str, str] | None = None,
                      extra_networks: Iterable[str] = (), wait: bool = True) -> Any:
        """HAProxy in master-worker mode (`haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg`), with the
        image's placeholder config (:80 answers 503). With `wait`, returns once it answers on :80."""
        container = self.container(network, name or f"haproxy-{next(self._names)}",
                                   command=["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                                   labels=labels, extra_networks=extra_networks)
        if wait:
            self.wait_http(f"http://{self.ip(container, network)}:80/", timeout=10, status=None)
        return container

    # --- images derived from the test image --------------------------------------------------------

    def derived_image(self, folder: str, variant: str | None = None) -> str:
        """The image of tests/images/<folder>/Dockerfile built `FROM` the test image (build arg BASE, and
        VARIANT when given), tagged `lbgen-test-<folder>[-variant]:<hash of the folder and the base tag>`,
        so it is built once per recipe."""
        return derived_image(self.client, self.image, IMAGES / folder, variant)

    def official_nginx(self, network: str, name: str | None = None, variant: str = "debian", **kw: Any) -> Any:
        """A replica of the official nginx image (tests/images/official/nginx; variant "alpine": its /bin/sh
        is BusyBox), run as its Dockerfile says (its ENTRYPOINT and CMD); returns once the master has
        written its pid file. Keyword arguments go to container() (mounts=..., ...)."""
        image = self.derived_image("official/nginx", None if variant == "debian" else variant)
        container = self.container(network, name or f"official-nginx-{next(self._names)}",
                                   image=image, stop_signal="SIGQUIT", **kw)
        self.wait_for(lambda: container.exec_run(["test", "-s", "/run/nginx.pid"]).exit_code == 0,
                      timeout=10, what=f"nginx in {container.name} to start")
        return container

    def official_haproxy(self, network: str, name: str | None = None, variant: str = "debian", wait: bool = True,
                         **kw: Any) -> Any:
        """A replica of the official haproxy image (tests/images/official/haproxy; variant "alpine": its
        /bin/sh is BusyBox), run as its Dockerfile says (user haproxy, entrypoint adding -W -db); with the
        base's placeholder haproxy.cfg (:80 answers 503). With `wait`, returns once :80 answers."""
        image = self.derived_image("official/haproxy", None if variant == "debian" else variant)
        container = self.container(network, name or f"official-haproxy-{next(self._names)}",
                                   image=image, stop_signal="SIGUSR1", **kw)
        if not wait:
            return container
        self.wait_http(f"http://{self.ip(container, network)}:80/", timeout=10, status=None)
        return container

    # --- looking ------------------------------------------------------------------------------------

    def ip(self, container: Any, network: str) -> str:
        """The container's IPv4 address on `network` (AssertionError when it has none)."""
        container.reload()
        endpoint = (container.attrs["NetworkSettings"]["Networks"] or {}).get(network) or {}
        address = endpoint.get("IPAddress")
        assert address, f"container {container.name} has no address on network {network}"
        return address

    def wait_http(self, url: str, timeout: float = 10.0, status: int | None = 200) -> str:
        """Poll url until it answers (with `status`, or anything when None); the body. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            try:
                code, body = http_get(url, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
                if status is None or code == status:
                    return body
                last = f"HTTP {code}: {body[:200]!r}"
            except (ConnectionError, TimeoutError) as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise AssertionError(f"{url} did not answer{'' if status is None else f' {status}'} within "
                                     f"{timeout:g}s (last: {last})")
            time.sleep(0.02)

    @staticmethod
    def wait_for(predicate: Any, timeout: float = 10.0, what: str = "a condition", interval: float = 0.05) -> None:
        """Poll predicate() until it is true; AssertionError naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    http_get = staticmethod(http_get)


def build_image() -> str:
    """The test image tag from tests/images/build.sh (cached by a hash of its recipe)."""
    try:
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"cannot build the test image with {BUILD_SCRIPT}: {e}") from e
    tag = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0 or not tag:
        raise LabError(f"{BUILD_SCRIPT} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    return tag


_derive_lock = threading.Lock()


def derived_image(client: Any, base: str, folder: Path, variant: str | None = None) -> str:
    """Build (or reuse) `folder`'s Dockerfile FROM `base` (build arg VARIANT when given); the tag. No registry
    is involved: the base is local."""
    import docker

    digest = hashlib.sha256(base.encode() + b"\0" + (variant or "").encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    name = str(folder.relative_to(IMAGES)) if folder.is_relative_to(IMAGES) else folder.name
    suffix = f"-{variant}" if variant else ""
    tag = f"lbgen-test-{name.replace('/', '-').replace('_', '-')}{suffix}:{digest.hexdigest()[:12]}"
    with _derive_lock:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        try:
            buildargs = {"BASE": base, **({"VARIANT": variant} if variant else {})}
            client.images.build(path=str(folder), tag=tag, buildargs=buildargs, rm=True, forcerm=True,
                                pull=False, labels={"lbgen-test-image": name})
        except (docker.errors.BuildError, docker.errors.APIError) as e:
            log = "".join(str(line.get("stream", line.get("error", ""))) for line in getattr(e, "build_log", []) or [])
            raise LabError(f"cannot build {tag} from {folder}: {e}\n{log[-2000:]}") from e
    return tag


def _healthcheck(spec: Any) -> dict[str, Any] | None:
    if spec is None or isinstance(spec, dict):
        return spec
    return {"test": list(spec), "interval": 200_000_000, "timeout": 2_000_000_000, "retries": 3,
            "start_period": 60_000_000_000}
