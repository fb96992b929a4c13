"""lbgen.yaml parsing: defaults, every error names its key path and line."""
from __future__ import annotations

import pytest

from lbgen.config import HealthConfig, parse_config
from lbgen.config_values import parse_duration
from lbgen.errors import ConfigError

BASE = """\
network: app-net
proxy:
  kind: nginx
  container: edge
services:
  web:
    listen: 80
"""


def test_defaults_are_filled_in():
    config = parse_config(BASE)
    assert config.network == "app-net"
    assert config.label_prefix == "lbgen"
    assert config.proxy.config_path == "/etc/nginx/conf.d/lbgen.conf"
    assert config.proxy.status_port == 9180
    web = config.services["web"]
    assert (web.listen, web.algorithm, web.hosts, web.default_env) == (80, "round_robin", (), None)
    assert web.health == HealthConfig(path="/health", expect_status="200", interval=1.0, timeout=2.0, rise=2, fall=3)


def test_haproxy_default_config_path():
    config = parse_config(BASE.replace("kind: nginx", "kind: haproxy"))
    assert config.proxy.config_path == "/usr/local/etc/haproxy/haproxy.cfg"


def test_full_service():
    config = parse_config(BASE + """\
    hosts: [shop.example.com, "*.example.org"]
    algorithm: hash
    hash_key: $cookie_session
    default_env: blue
    retries: 0
    connect_timeout: 250ms
    health: {path: /healthz, expect_status: 2xx, interval: 500ms, timeout: 1m, rise: 1, fall: 5}
""")
    web = config.services["web"]
    assert web.hosts == ("shop.example.com", "*.example.org")
    assert web.hash_key == "$cookie_session"
    assert web.connect_timeout == 0.25
    assert web.health.timeout == 60.0
    assert web.health.status_ok(204) and not web.health.status_ok(301)


@pytest.mark.parametrize("value,seconds", [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), (3, 3.0), ("1.5", 1.5), ("1h", 3600.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5x", "", "-1s", "0", True, "1 s", "1d", None, [1]])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("extra,message", [
    ("    health:\n      interval: 5x\n", "lbgen.yaml:9: services.web.health.interval: '5x' is not a duration"),
    ("    lsten: 80\n", "lbgen.yaml:8: services.web.lsten: unknown key"),
    ("    listen: \"80\"\n", "lbgen.yaml:8: duplicate key 'listen'"),
    ("    algorithm: fastest\n", "lbgen.yaml:8: services.web.algorithm: 'fastest' is not one of"),
    ("    algorithm: hash\n", "lbgen.yaml:8: services.web.algorithm: algorithm hash needs hash_key"),
    ("    hash_key: $request_uri\n", "services.web.hash_key: hash_key is only for algorithm: hash"),
    ("    hosts: [\"Shop.Example.com\"]\n", "services.web.hosts: item 0: 'Shop.Example.com' is not a host name"),
    ("    hosts: shop.example.com\n", "services.web.hosts: expected a list, got a string"),
    ("    hosts: [a.example, b.example, a.example]\n", "services.web.hosts: item 2: host a.example is listed twice"),
    ("    health:\n      rise: 0\n", "services.web.health.rise: expected an integer 1-100, got 0"),
    ("    health:\n      path: \"/x;return 200\"\n", "services.web.health.path"),
    ("    default_env: \"Blue Env\"\n", "services.web.default_env: 'Blue Env' is not a valid name"),
    ("    retries: 11\n", "services.web.retries: expected an integer 0-10"),
    ("  api:\n    listen: 80\n", "services.api.hosts: port 80 with no hosts (the default server) is already routed to service web"),
    ("  bad name:\n    listen: 81\n", "services.bad name: 'bad name' is not a valid name"),
])
def test_errors_name_key_path_and_line(extra, message):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + extra)
    assert message in str(info.value)


def test_listen_on_status_port_is_refused():
    with pytest.raises(ConfigError, match="services.web.listen: port 9180 is proxy.status_port"):
        parse_config(BASE.replace("listen: 80", "listen: 9180"))


@pytest.mark.parametrize("text,message", [
    ("network: [", "lbgen.yaml:1: invalid YAML"),
    ("- a\n- b\n", "(top level): expected a mapping, got a list"),
    ("", "(top level): expected a mapping, got nothing"),
    ("network: x\nproxy: {kind: nginx, container: e}\n", "(top level): missing required key 'services'"),
    ("network: x\nproxy: {kind: apache, container: e}\nservices: {web: {}}\n", "proxy.kind: 'apache' is not one of"),
    ("network: x\nproxy: {kind: nginx, container: 'e; rm -rf /'}\nservices: {web: {}}\n", "proxy.container"),
    ("network: x\nproxy: {kind: nginx, container: e, config_path: ../etc/x}\nservices: {web: {}}\n", "proxy.config_path"),
    ("network: x\nproxy: {kind: nginx, container: e}\nservices: {}\n", "services: expected a mapping of service names"),
    ("network: x\nproxy: {kind: nginx, container: e}\nservices: {web: {}}\nextra: 1\n", "lbgen.yaml:4: extra: unknown key"),
    ("network: !!python/object:os.system x\nproxy: {}\nservices: {}\n", "invalid YAML"),
])
def test_malformed_documents(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert message in str(info.value)


def test_service_lookup():
    config = parse_config(BASE)
    assert config.service(None).name == "web"
    with pytest.raises(Exception, match="no service 'api'"):
        config.service("api")
