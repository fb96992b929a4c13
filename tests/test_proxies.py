"""The proxy kinds (lbgen.proxies): how each reloads for every shape of PID 1, HAProxy's master-worker
preflight, nginx's backup rule, the registry config.py reads, and that a new kind needs no other change."""
from __future__ import annotations

import pytest

from fakeproxy import FakeProxy
import fakes
from fakes import FakeEngine
from lbgen.app import Lbgen
from lbgen.config import parse_config
from lbgen.engine import ContainerInfo, ExecResult
from lbgen.errors import ConfigError, ProxyError, ReloadFailed
from lbgen.model import Backend, Pool
from lbgen.proxies import KINDS, kind_named
from lbgen.proxies.base import INPLACE, ProxyKind
from lbgen.proxies.haproxy import HAPROXY
from lbgen.proxies.nginx import NGINX
from lbgen.render import render

HAPROXY_CFG = "/usr/local/etc/haproxy/haproxy.cfg"


def proxy_with(command: tuple[str, ...]) -> tuple[FakeEngine, ContainerInfo]:
    engine = FakeEngine()
    return engine, engine.add_proxy("edge", command=command)


# --- reload: what each kind does for each shape of PID 1 --------------------------------------------------

@pytest.mark.parametrize("command", [
    ("nginx", "-g", "daemon off;"),
    ("/usr/sbin/nginx", "-g", "daemon off;"),
    ("/docker-entrypoint.sh", "nginx", "-g", "daemon off;"),  # the official image: its entrypoint execs nginx
])
def test_nginx_master_as_pid1_is_sent_hup(command):
    engine, info = proxy_with(command)
    NGINX.reload(engine, info)
    assert engine.signals == [("edge", "HUP")] and engine.execs == []


@pytest.mark.parametrize("command", [
    ("tini", "--", "nginx", "-g", "daemon off;"),
    ("sh", "-c", "nginx -g 'daemon off;'"),
    ("nginx-debug", "-g", "daemon off;"),
    (),
])
def test_nginx_behind_an_init_or_a_shell_reloads_through_its_pid_file(command):
    engine, info = proxy_with(command)
    engine.exec_handlers["nginx"] = lambda eng, c, argv: ExecResult(0, "")
    NGINX.reload(engine, info)
    assert engine.execs == [("edge", ["nginx", "-s", "reload"])] and engine.signals == []


def test_a_failed_nginx_s_reload_says_why():
    engine, info = proxy_with(("tini", "--", "nginx"))
    output = 'nginx: [notice] signal process started\nnginx: [error] open() "/run/nginx.pid" failed (2: No such file)\n'
    engine.exec_handlers["nginx"] = lambda eng, c, argv: ExecResult(1, output)
    with pytest.raises(ReloadFailed) as e:
        NGINX.reload(engine, info)
    assert str(e.value) == ('reload of nginx in edge failed: nginx: [error] open() "/run/nginx.pid" failed '
                            '(2: No such file)')


@pytest.mark.parametrize("command", [
    ("haproxy", "-W", "-db", "-f", HAPROXY_CFG),
    ("/usr/sbin/haproxy", "-Ws", "-f", HAPROXY_CFG),
    ("/usr/local/bin/docker-entrypoint.sh", "haproxy", "-f", HAPROXY_CFG),
])
def test_haproxy_master_as_pid1_is_sent_usr2(command):
    engine, info = proxy_with(command)
    HAPROXY.reload(engine, info)
    assert engine.signals == [("edge", "USR2")] and engine.execs == []


@pytest.mark.parametrize("command,shown", [
    (("tini", "--", "haproxy", "-W"), "tini -- haproxy"),
    (("sh", "-c", "haproxy -W -f /x.cfg"), "sh -c haproxy -W -f /x.cfg"),
])
def test_haproxy_not_the_master_as_pid1_is_refused_without_a_signal(command, shown):
    engine, info = proxy_with(command)
    with pytest.raises(ProxyError) as e:
        HAPROXY.reload(engine, info)
    assert str(e.value) == (f"PID 1 of proxy container edge is not the HAProxy master ({shown}); "
                            f"lbgen reloads HAProxy by signalling its master")
    assert engine.signals == [] and engine.execs == []


# --- preflight: HAProxy must run in master-worker mode ----------------------------------------------------

MASTER_WORKER_LIVE = "global\n    master-worker\n"


@pytest.mark.parametrize("command,live,ok", [
    (("haproxy", "-W", "-db", "-f", HAPROXY_CFG), None, True),
    (("haproxy", "-Ws", "-f", "/x.cfg"), None, True),
    (("/usr/local/bin/docker-entrypoint.sh", "haproxy", "-f", HAPROXY_CFG), None, True),
    (("haproxy", "-db", "-f", HAPROXY_CFG), MASTER_WORKER_LIVE, True),  # our own file turns it on
    (("haproxy", "-db", "-f", HAPROXY_CFG), None, False),
    (("haproxy", "-db", "-f", HAPROXY_CFG), "global\n    # master-worker\n", False),
    (("haproxy", "-db", "-f", "/other.cfg"), MASTER_WORKER_LIVE, False),  # started without our file
    (("/usr/local/bin/docker-entrypoint.sh", "sh", "-c", "haproxy -f /x"), None, False),
    ((), None, False),
])
def test_haproxy_preflight_wants_master_worker_mode(command, live, ok):
    _, info = proxy_with(command)
    if ok:
        HAPROXY.preflight(info, HAPROXY_CFG, live)
        return
    with pytest.raises(ProxyError) as e:
        HAPROXY.preflight(info, HAPROXY_CFG, live)
    assert str(e.value) == (
        "HAProxy in container edge is not running in master-worker mode, so it cannot reload seamlessly; "
        "lbgen will not restart it. Start it with `haproxy -W` (or `master-worker` in its global section); "
        "nothing was changed")


def test_nginx_preflight_accepts_any_running_nginx():
    _, info = proxy_with(("sh", "-c", "nginx"))
    NGINX.preflight(info, "/etc/nginx/conf.d/lbgen.conf", None)


def test_the_driver_refuses_a_haproxy_outside_master_worker_before_any_change():
    fp = FakeProxy("haproxy")
    fp.engine.update("proxy", command=("haproxy", "-db", "-f", HAPROXY_CFG))
    fp.backend("web-blue-1", "blue")
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None, log=lambda line: None)
    with pytest.raises(ProxyError, match="not running in master-worker mode.*nothing was changed"):
        app.apply()
    assert fp.live() is None and fp.engine.signals == [] and fp.engine.execs == []


# --- render rules: nginx leaves out backups where it cannot use them --------------------------------------

def backend(name: str, backup: bool = False) -> Backend:
    return Backend(service="web", env="blue", name=name, id=name, address="192.0.2.1", port=80, backup=backup)


POOL = Pool("web", "blue", (backend("web-b1", backup=True), backend("web-1"), backend("web-b2", backup=True),
                            backend("web-2")))


@pytest.mark.parametrize("algorithm", ["ip_hash", "hash", "random"])
def test_nginx_leaves_out_backups_with_hashing_algorithms_and_says_so(algorithm):
    servers, warnings = NGINX.servers(algorithm, POOL)
    assert [s.name for s in servers] == ["web-1", "web-2"]
    assert warnings == (f"service web: nginx cannot use backup servers with {algorithm}; left out web-b1, web-b2",)


@pytest.mark.parametrize("kind,algorithm", [(NGINX, "round_robin"), (NGINX, "least_conn")]
                         + [(HAPROXY, a) for a in ("round_robin", "least_conn", "ip_hash", "hash", "random")])
def test_backups_follow_the_primaries_otherwise(kind, algorithm):
    servers, warnings = kind.servers(algorithm, POOL)
    assert [s.name for s in servers] == ["web-1", "web-2", "web-b1", "web-b2"] and warnings == ()


def test_nginx_without_backups_has_nothing_to_leave_out():
    servers, warnings = NGINX.servers("ip_hash", Pool("web", "blue", (backend("web-1"),)))
    assert [s.name for s in servers] == ["web-1"] and warnings == ()


# --- the registry, as config.py reads it ------------------------------------------------------------------

@pytest.mark.parametrize("kind,path", [("nginx", "/etc/nginx/conf.d/lbgen.conf"), ("haproxy", HAPROXY_CFG)])
def test_config_takes_the_default_config_path_from_the_kind(kind, path):
    config = parse_config(f"network: n\nproxy: {{kind: {kind}, container: e}}\nservices: {{web: {{}}}}\n")
    assert config.proxy.config_path == path
    assert kind_named(kind).name == kind


def test_an_unknown_kind_is_a_config_error_naming_the_known_ones():
    assert list(KINDS) == ["nginx", "haproxy"]
    with pytest.raises(ConfigError, match=r"^unknown proxy kind 'apache' \(known: nginx, haproxy\)$"):
        kind_named("apache")


# --- a third kind: one ProxyKind and one template, nothing else -------------------------------------------

class Toy(ProxyKind):
    name = "toy"
    binary = "toyd"
    default_config_path = "/etc/toy/lbgen.toy"
    template_name = "toy.j2"
    validate_mode = INPLACE
    validator = ("toyd", "--check")
    reload_signal = "HUP"

    def reload(self, engine, info):
        engine.signal(info.name, self.reload_signal)


def test_a_new_kind_needs_only_its_module_and_its_template(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "toy", Toy())
    monkeypatch.setitem(fakes.PROXY_COMMANDS, "toy", ("toyd", "--foreground"))
    (tmp_path / "toy.j2").write_text("{{ meta_comment }}\n{% for s in services %}{{ s.name }}:"
                                     "{% for b in s.servers %} {{ b.endpoint }}{% endfor %}\n{% endfor %}")
    fp = FakeProxy("toy", f"network: lbnet\nproxy: {{kind: toy, container: proxy}}\ntemplates_dir: {tmp_path}\n"
                          "services:\n  web: {default_env: blue}\n")
    assert fp.path == "/etc/toy/lbgen.toy"
    address = fp.backend("web-blue-1", "blue")
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None, log=lambda line: None)
    app.core.proxy.verify_timeout = 0.5
    assert app.apply().changed
    assert fp.live().decode().splitlines()[2] == f"web: {address}:8080"  # after the meta and routed lines
    assert fp.engine.signals == [("proxy", "HUP")]
    assert render(fp.config, []).text.splitlines()[2] == "web:"


# --- layering: config.py reads the kinds without the driver -----------------------------------------------

def test_config_loads_the_kinds_but_not_the_driver_render_or_health():
    import subprocess
    import sys

    code = ("import sys, lbgen.config; print(' '.join(sorted(m for m in sys.modules if m.startswith('lbgen'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "lbgen.proxies.nginx" in loaded and "lbgen.proxies.haproxy" in loaded
    assert not {"lbgen.proxies.driver", "lbgen.render", "lbgen.health", "lbgen.model"} & set(loaded), loaded


def test_the_kind_modules_import_only_errors_engine_and_the_base():
    import ast
    from pathlib import Path

    import lbgen.proxies

    allowed = {"lbgen.errors", "lbgen.engine", "lbgen.proxies.base"}
    for name in ("__init__.py", "base.py", "nginx.py", "haproxy.py", "haproxy_runtime.py"):
        tree = ast.parse((Path(lbgen.proxies.__file__).parent / name).read_text())
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and id(node) not in type_only and (node.module or "").startswith("lbgen")}
        if name == "__init__.py":
            allowed = allowed | {"lbgen.proxies.nginx", "lbgen.proxies.haproxy"}
        if name == "haproxy.py":  # its runtime API, a module of the same rules
            allowed = allowed | {"lbgen.proxies", "lbgen.proxies.haproxy_runtime"}
        assert imported <= allowed, (name, imported - allowed)
