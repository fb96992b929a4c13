"""TCP services (`mode: tcp`): the keys refused on them, their port to themselves, the nginx `stream {}` and
HAProxy `mode tcp` renders (golden files, checked by the real binaries in test_render_validate.py), connect
checks (direct and through the engine), nginx's main-context file required before a TCP service goes live,
and `lbgen doctor` on the stream module. Fast: fakes; tests/test_tcp_integration.py drives the real ones."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from fakeproxy import FakeProxy
from fakes import FakeEngine
from lbgen.app import Lbgen
from lbgen.config import parse_config
from lbgen.doctor import diagnose
from lbgen.engine import ExecResult
from lbgen.errors import ConfigError, HealthGateFailed
from lbgen.health import HttpChecker, gate
from lbgen.model import CRITICAL, OK, Backend, Inventory, Maintenance
from lbgen.probe import EngineChecker, Probe
from lbgen.render import parse_meta, render
from lbgen.routing import build_pools

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("LBGEN_UPDATE_GOLDEN") == "1"
MAIN = "/etc/nginx/lbgen-main.conf"

BASE = """\
network: app-net
proxy: {{kind: {kind}, container: edge}}
services:
"""


def config(services: str, kind: str = "nginx") -> Any:
    return parse_config(BASE.format(kind=kind) + services)


def error(services: str) -> str:
    with pytest.raises(ConfigError) as info:
        config(services)
    return str(info.value)


# --- lbgen.yaml ----------------------------------------------------------------------------------------

def test_mode_defaults_to_http_and_tcp_checks_are_connects():
    cfg = config("  web: {}\n  redis: {mode: tcp, listen: 6379, health: {interval: 500ms, rise: 1}}\n")
    assert cfg.services["web"].mode == "http" and cfg.services["web"].health.mode == "http"
    assert cfg.services["redis"].mode == "tcp" and cfg.services["redis"].health.mode == "tcp"
    assert cfg.services["redis"].health.interval == 0.5


@pytest.mark.parametrize("key, yaml", [
    ("hosts", "hosts: [db.example.com]"),
    ("paths", "paths: [/api]"),
    ("strip_prefix", "strip_prefix: true"),
    ("tls", "tls: {cert: a.pem, key: a.key}"),
    ("websocket_timeout", "websocket_timeout: 1h"),
])
def test_http_only_keys_on_a_tcp_service_are_errors_naming_the_key(key, yaml):
    message = error(f"  redis:\n    mode: tcp\n    listen: 6379\n    {yaml}\n")
    assert message == f"lbgen.yaml:7: services.redis.{key}: {key} is for HTTP services; this service has mode: tcp"


@pytest.mark.parametrize("key, value", [("path", "/ping"), ("expect_status", "2xx"), ("host", "db.example.com"),
                                        ("headers", "{X-A: b}")])
def test_http_check_keys_on_a_tcp_service_are_errors_naming_the_key(key, value):
    message = error(f"  redis:\n    mode: tcp\n    listen: 6379\n    health:\n      {key}: {value}\n")
    assert message.startswith(f"lbgen.yaml:8: services.redis.health.{key}: a mode: tcp service is checked by a "
                              f"TCP connect, which has no {key}")


def test_tcp_algorithms_are_round_robin_least_conn_source_hash_and_random():
    for algorithm in ("round_robin", "least_conn", "ip_hash", "random"):
        assert config(f"  db: {{mode: tcp, listen: 5432, algorithm: {algorithm}}}\n").services["db"].algorithm == algorithm
    assert config("  db: {mode: tcp, listen: 5432, algorithm: hash, hash_key: $remote_addr}\n")
    message = error("  db: {mode: tcp, listen: 5432, algorithm: hash, hash_key: $request_uri}\n")
    assert message.startswith("lbgen.yaml:4: services.db.hash_key: $request_uri reads the HTTP request; a mode: "
                              "tcp service can hash only on $remote_addr")
    assert "is not one of: http, tcp" in error("  db: {mode: udp, listen: 5432}\n")


@pytest.mark.parametrize("services, message", [
    ("  web: {}\n  redis: {mode: tcp, listen: 80}\n",
     "services.redis.listen: port 80 is also used by HTTP service web; a mode: tcp service has its port to itself"),
    ("  redis: {mode: tcp, listen: 80}\n  web: {}\n",
     "services.redis.listen: port 80 is also used by HTTP service web"),
    ("  a: {mode: tcp, listen: 6379}\n  b: {mode: tcp, listen: 6379}\n",
     "services.a.listen: port 6379 is also used by TCP service b"),
    ("  shop: {listen: 8080, tls: {cert: c.pem, key: c.key, listen: 6380}}\n  redis: {mode: tcp, listen: 6380}\n",
     "services.redis.listen: port 6380 is also used by HTTP service shop"),
    ("  redis: {mode: tcp, listen: 9180}\n", "services.redis.listen: port 9180 is proxy.status_port"),
])
def test_a_tcp_service_has_its_port_to_itself(services, message):
    assert message in error(services)


def test_snippets_stay_allowed_on_a_tcp_service():
    svc = config("  db:\n    mode: tcp\n    listen: 5432\n    nginx_snippet: 'proxy_buffer_size 32k;'\n"
                 "    haproxy_snippet: 'option tcpka'\n").services["db"]
    assert svc.nginx_snippet == "proxy_buffer_size 32k;" and svc.haproxy_snippet == "option tcpka"


# --- rendering (golden files) --------------------------------------------------------------------------

SERVICES = """\
  web:
    default_env: blue
  redis:
    mode: tcp
    listen: 6379
    algorithm: least_conn
    default_env: blue
    connect_timeout: 2s
    read_timeout: 10m
    retries: 1
    health: {interval: 500ms, timeout: 1s, rise: 1, fall: 2}
  pg:
    mode: tcp
    listen: 5432
    algorithm: ip_hash
    nginx_snippet: "proxy_buffer_size 32k;"
    haproxy_snippet: "option tcpka"
  mqtt:
    mode: tcp
    listen: 1883
    algorithm: hash
    hash_key: $remote_addr
  queue:
    mode: tcp
    listen: 5672
  spare:
    mode: tcp
    listen: 7000
"""


def b(service: str, name: str, address: str, env: str | None = None, port: int = 8080, **kw: Any) -> Backend:
    return Backend(service=service, env=env, name=name, id=f"id-{name}", address=address, port=port, **kw)


BACKENDS = (
    b("web", "web-blue-1", "172.20.0.11", "blue"),
    b("redis", "redis-blue-1", "172.20.1.11", "blue", 6379),
    b("redis", "redis-blue-2", "172.20.1.12", "blue", 6379, weight=3),
    b("redis", "redis-blue-3", "172.20.1.13", "blue", 6379, backup=True),
    b("redis", "redis-green-1", "172.20.1.21", "green", 6379),
    b("pg", "pg-1", "172.20.2.11", None, 5432),
    b("mqtt", "mqtt-1", "172.20.3.11", None, 1883),
    b("mqtt", "mqtt-2", "172.20.3.12", None, 1883, backup=True),
    b("queue", "queue-1", "172.20.4.11", None, 5672),
)
MAINTENANCE = {"queue": Maintenance("back soon", 120, "2026-01-01T00:00:00Z")}


def render_tcp(kind: str) -> Any:
    cfg = config(SERVICES, kind)
    return render(cfg, build_pools(cfg, Inventory(backends=BACKENDS), {}), certs={}, maintenance=MAINTENANCE)


def assert_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run LBGEN_UPDATE_GOLDEN=1 python -m pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"rendered output differs from {name}"


def test_nginx_renders_tcp_services_into_the_stream_block_of_the_main_context_file():
    rendered = render_tcp("nginx")
    assert_golden(rendered.text, "tcp.nginx.conf")
    assert_golden(rendered.main, "tcp.nginx-main.conf")
    # The http file has the HTTP service only; every service is named in the pool lines and status body.
    assert "lbgen_redis" not in rendered.text and "upstream lbgen_web" in rendered.text
    assert parse_meta(rendered.text).routed["redis"] == {"redis-blue-1", "redis-blue-2", "redis-blue-3"}
    assert " redis=blue " in rendered.text and rendered.active["pg"] is None
    # nginx forbids backups with hashing (the stream module too): left out, with the HTTP warning.
    assert rendered.warnings == ("service mqtt: nginx cannot use backup servers with hash; left out mqtt-2",)


def test_haproxy_renders_tcp_frontends_and_backends_with_connect_checks():
    rendered = render_tcp("haproxy")
    assert_golden(rendered.text, "tcp.haproxy.cfg")
    tcp_part = rendered.text.split("\ndefaults\n    mode tcp\n", 1)[1]
    assert "httpchk" not in tcp_part and "http-" not in tcp_part
    assert "frontend tcp_6379\n" in tcp_part and "frontend port_6379" not in rendered.text
    assert rendered.main is None and rendered.warnings == ()


def test_maintenance_and_an_empty_pool_refuse_connections_and_keep_the_servers():
    nginx, haproxy = render_tcp("nginx").main, render_tcp("haproxy").text
    queue = nginx.split("# Service queue", 1)[1].split("# Service", 1)[0]
    assert "deny all;" in queue and "proxy_pass lbgen_queue;" in queue and "172.20.4.11:8080" not in queue
    assert "server 172.20.4.11:5672" in queue
    spare = nginx.split("# Service spare", 1)[1]
    assert "deny all;" in spare and "upstream" not in spare
    queue = haproxy.split("frontend tcp_5672\n", 1)[1].split("\n\n", 2)
    assert "    tcp-request connection reject" in queue[0].splitlines()
    assert "    server queue-1 172.20.4.11:5672 weight 1  # env=-" in queue[1].splitlines()


def test_without_tcp_services_nothing_changes_for_http():
    cfg = config("  web: {default_env: blue}\n")
    rendered = render(cfg, build_pools(cfg, Inventory(backends=BACKENDS[:1]), {}), certs={})
    assert "stream {" not in rendered.main
    assert "mode tcp" not in render(config("  web: {}\n", "haproxy"), [], certs={}).text


# --- connect checks ------------------------------------------------------------------------------------

REDIS = config("  redis: {mode: tcp, listen: 6379, health: {interval: 100ms, timeout: 1s, rise: 2, fall: 2}}\n"
               ).services["redis"].health


def test_a_tcp_check_is_a_connect_and_sends_no_http():
    tried: list[tuple[str, int, float]] = []

    def connect(address: str, port: int, timeout: float) -> None:
        tried.append((address, port, timeout))
        if address == "10.9.0.2":
            raise ConnectionError("connection refused")

    def no_http(url: str, timeout: float) -> tuple[int, str]:
        raise AssertionError(url)

    checker = HttpChecker(no_http, connect=connect)
    up, down = b("redis", "r-1", "10.9.0.1", port=6379), b("redis", "r-2", "10.9.0.2", port=6379)
    assert checker.check(up, REDIS).ok and checker.check(up, REDIS).detail == "TCP connect ok"
    result = checker.check(down, REDIS)
    assert not result.ok and result.detail == "connection refused"
    assert tried[0] == ("10.9.0.1", 6379, 1.0)


def test_the_gate_on_connect_checks_refuses_a_green_that_does_not_listen():
    checker = HttpChecker(lambda url, t: (200, ""), connect=lambda a, p, t: (_ for _ in ()).throw(
        ConnectionError("connection refused")))
    now = [0.0]
    result = gate([b("redis", "r-green-1", "10.9.0.3", port=6379)], REDIS, checker, timeout=1.0,
                  clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not result.passed and result.summary() == "r-green-1: connection refused"


@pytest.fixture
def listening() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def local_engine() -> FakeEngine:
    """A FakeEngine whose `sh` is this machine's: the connect probe runs for real, 'inside' the container."""
    engine = FakeEngine()
    engine.add_proxy("proxy", "nginx", network="lbnet")
    engine.exec_handlers["sh"] = lambda e, c, argv: ExecResult(0, subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=False).stdout)
    return engine


def test_the_engine_connect_probe_checks_every_target_in_one_exec(listening):
    engine = local_engine()
    answers = Probe(engine, "proxy").connect_many([("127.0.0.1", listening), ("127.0.0.1", closed_port())], 2.0)
    assert answers == [None, "connection refused"]
    results = EngineChecker(Probe(engine, "proxy")).check_many(
        [b("redis", "r-1", "127.0.0.1", port=listening), b("redis", "r-2", "127.0.0.1", port=closed_port())], REDIS)
    assert [(r.ok, r.detail) for r in results] == [(True, "TCP connect ok"), (False, "connection refused")]


def test_the_connect_probe_says_when_the_container_has_no_tcp_client():
    engine = FakeEngine()
    engine.add_proxy("proxy", "nginx", network="lbnet")
    engine.exec_handlers["sh"] = lambda e, c, argv: ExecResult(0, subprocess.run(
        ["/bin/sh", *argv[1:]], capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": "/nonexistent"}).stdout)
    assert Probe(engine, "proxy").connect_many([("127.0.0.1", 1)], 1.0) == [
        "no TCP client in the proxy container (bash or nc)"]


# --- nginx: the main-context file is required, doctor ----------------------------------------------------

TCP_YAML = """\
network: lbnet
proxy: {kind: nginx, container: proxy}
services:
  redis:
    mode: tcp
    listen: 6379
    default_env: blue
    health: {interval: 100ms, timeout: 50ms, rise: 1, fall: 2}
"""
DEBIAN_NGINX_CONF = "user www-data;\ninclude /etc/nginx/modules-enabled/*.conf;\n{include}\nevents {{}}\nhttp {{\n}}"


def fake_nginx(nginx_conf: str, version: str = "--with-stream", modules: dict[str, str] | None = None) -> FakeProxy:
    fp = FakeProxy("nginx", TCP_YAML)
    redis_backend(fp, "redis-blue-1", "blue")
    files = {"/etc/nginx/nginx.conf": nginx_conf, **(modules or {})}

    def nginx(engine: FakeEngine, container: Any, argv: list[str]) -> ExecResult:
        if argv[1] == "-V":
            return ExecResult(0, f"nginx version: nginx/1.27.0\nconfigure arguments: --with-http_ssl_module {version}\n")
        if argv[1] == "-v":
            return ExecResult(0, "nginx version: nginx/1.27.0\n")
        dumped = dict(files)
        main = fp.engine.read("proxy", MAIN)
        if main is not None and "lbgen-main" in nginx_conf:
            dumped[MAIN] = main.decode()
        return ExecResult(0, "".join(f"# configuration file {p}:\n{t}\n\n" for p, t in dumped.items()))

    fp.engine.exec_handlers["nginx"] = nginx
    fp.engine.exec_handlers["id"] = lambda e, c, argv: ExecResult(0, "0\n")
    return fp


def redis_backend(fp: FakeProxy, name: str, env: str, listening: bool = True) -> None:
    """A backend of redis; `listening` ones accept the fake connect check."""
    info = fp.engine.add_backend(name, "redis", env, network="lbnet", port=6379)
    if listening:
        fp.health[info.networks["lbnet"]] = 200


def app(fp: FakeProxy) -> Lbgen:
    def connect(address: str, port: int, timeout: float) -> None:
        if address not in fp.health:
            raise ConnectionError("connection refused")

    checker = HttpChecker(fp.get, connect=connect)
    return Lbgen(fp.config, fp.engine, checker=checker, get=fp.get, sleep=lambda s: None, log=lambda e: None)


def test_apply_refuses_a_tcp_service_nginx_would_not_serve_and_changes_nothing():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include=""))
    with pytest.raises(ConfigError) as info:
        app(fp).apply()
    assert str(info.value) == (
        f"TCP service redis (nginx stream {{}}) is served from {MAIN}, and nginx.conf in proxy does not include "
        "it. Add `include /etc/nginx/lbgen-main*.conf;` at the top level of nginx.conf, after any load_module "
        "line (README: \"TCP services\"); nothing was changed")
    assert fp.live() is None and fp.engine.read("proxy", MAIN) is None


def test_apply_installs_the_stream_block_once_nginx_conf_includes_the_file():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    result = app(fp).apply()
    main = fp.engine.read("proxy", MAIN).decode()
    assert "    server {\n        listen 6379;\n        proxy_pass lbgen_redis;\n" in main
    assert fp.serving == result.generation


def test_a_switch_and_maintenance_of_a_tcp_service_go_through_the_main_context_file():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    redis_backend(fp, "redis-green-1", "green")
    lbgen = app(fp)
    lbgen.apply()
    result = lbgen.switch("green", service="redis", timeout=1)
    assert result.outcome.value == "switched"
    main = fp.engine.read("proxy", MAIN).decode()
    assert "redis-green-1 env=green" in main and "redis-blue-1" not in main
    lbgen.maintenance(True, "redis")
    main = fp.engine.read("proxy", MAIN).decode()
    assert "        deny all;\n        proxy_pass lbgen_redis;\n" in main
    lbgen.maintenance(False, "redis")
    assert "deny all;" not in fp.engine.read("proxy", MAIN).decode()


def test_the_gate_of_a_tcp_service_refuses_a_green_that_does_not_listen():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    lbgen = app(fp)
    lbgen.apply()
    redis_backend(fp, "redis-green-1", "green", listening=False)
    before = (fp.live(), fp.engine.read("proxy", MAIN))
    with pytest.raises(HealthGateFailed, match="redis-green-1: connection refused"):
        lbgen.switch("green", service="redis", timeout=0.3)
    assert (fp.live(), fp.engine.read("proxy", MAIN)) == before


@pytest.mark.parametrize("version, modules, include_first, status, says", [
    ("--with-stream", {}, False, OK, "built in (--with-stream)"),
    ("--with-stream=dynamic", {"/etc/nginx/modules-enabled/50-mod-stream.conf":
                               "load_module modules/ngx_stream_module.so;"}, False, OK,
     "loads the stream module (/etc/nginx/modules-enabled/50-mod-stream.conf)"),
    ("--with-stream=dynamic", {"/etc/nginx/modules-enabled/50-mod-stream.conf":
                               "load_module modules/ngx_stream_module.so;"}, True, CRITICAL,
     "includes /etc/nginx/lbgen-main.conf before it loads the stream module"),
    ("--with-stream=dynamic", {}, False, CRITICAL, "only as a dynamic module (--with-stream=dynamic) and does not load it"),
    ("--with-mail", {}, False, CRITICAL, "has no stream module"),
])
def test_doctor_checks_the_stream_module(version, modules, include_first, status, says):
    include = "include /etc/nginx/lbgen-main*.conf;"
    conf = (f"user www-data;\n{include}\ninclude /etc/nginx/modules-enabled/*.conf;\nevents {{}}\nhttp {{\n}}"
            if include_first else DEBIAN_NGINX_CONF.format(include=include))
    fp = fake_nginx(conf, version, modules)
    report = diagnose(app(fp).core)
    [check] = [c for c in report.checks if c.name == "stream-module"]
    assert check.status == status and says in check.message, check
    assert (check.fix == "") is (status == OK)


def test_doctor_says_critical_when_nginx_conf_lacks_the_include_for_a_tcp_service():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include=""))
    [check] = [c for c in diagnose(app(fp).core).checks if c.name == "main-context"]
    assert check.status == CRITICAL and "nginx does not serve the TCP services" in check.message
    assert "RUN echo 'include /etc/nginx/lbgen-main*.conf;' >> /etc/nginx/nginx.conf" in check.fix


# --- health --apply, render --main -----------------------------------------------------------------------

def test_health_apply_ejects_a_tcp_backend_that_stops_accepting_and_readmits_it():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    redis_backend(fp, "redis-blue-2", "blue")
    lbgen = app(fp)
    lbgen.apply()
    [address] = [a for a, _ in fp.health.items()][1:2]
    del fp.health[address]  # redis-blue-2 stops accepting connections
    for _ in range(2):  # fall: 2
        report = lbgen.health("redis", apply=True)
    [svc] = report.services
    assert [(b.backend.name, b.healthy, b.detail) for b in svc.backends if not b.healthy] == [
        ("redis-blue-2", False, "connection refused")]
    main = fp.engine.read("proxy", MAIN).decode()
    assert "redis-blue-1 env=blue" in main and "redis-blue-2" not in main
    fp.health[address] = 200
    lbgen.health("redis", apply=True)  # rise: 1
    assert "redis-blue-2 env=blue" in fp.engine.read("proxy", MAIN).decode()


def test_render_main_prints_nginx_s_main_context_file(tmp_path):
    from click.testing import CliRunner

    from lbgen.cli import cli

    (tmp_path / "lbgen.yaml").write_text(BASE.format(kind="nginx") + SERVICES)
    (tmp_path / "inventory.yaml").write_text(
        "backends:\n  - {service: redis, env: blue, name: redis-blue-1, address: 172.20.1.11, port: 6379}\n")
    runner = CliRunner()
    args = ["--config", str(tmp_path / "lbgen.yaml"), "render", "--from-file", str(tmp_path / "inventory.yaml")]
    result = runner.invoke(cli, [*args, "--main"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# lbgen-main: generation ") and "    upstream lbgen_redis {\n" in result.stdout
    assert "\nstream {\n" not in runner.invoke(cli, args).stdout
    (tmp_path / "lbgen.yaml").write_text(BASE.format(kind="haproxy") + SERVICES)
    result = runner.invoke(cli, [*args, "--main"])
    assert result.exit_code == 2 and result.stderr == (
        "Error: --main: haproxy has no main-context file (lbgen writes its whole config)\n")


def test_a_dry_run_shows_the_stream_change_in_the_main_context_file():
    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    redis_backend(fp, "redis-green-1", "green")
    lbgen = app(fp)
    lbgen.apply()
    before = (fp.live(), fp.engine.read("proxy", MAIN))
    result = lbgen.switch("green", service="redis", dry_run=True)
    assert "--- live main-context file\n+++ rendered main-context file\n" in result.diff
    assert "+        server 192.0.2." in result.diff and "# redis-green-1 env=green\n" in result.diff
    assert (fp.live(), fp.engine.read("proxy", MAIN)) == before
    assert "main-context" not in lbgen.apply(dry_run=True).diff  # nothing to change


def test_maintenance_of_a_tcp_service_takes_no_message():
    from lbgen.errors import UsageError

    fp = fake_nginx(DEBIAN_NGINX_CONF.format(include="include /etc/nginx/lbgen-main*.conf;"))
    with pytest.raises(UsageError, match="redis has mode: tcp, whose maintenance refuses new connections"):
        app(fp).maintenance(True, "redis", message="back soon")
    assert fp.live() is None
