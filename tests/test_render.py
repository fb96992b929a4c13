"""Rendering: whole nginx and HAProxy configs compared with the golden files in tests/golden/, plus the
invariants lbgen relies on (the meta header parses back, output is deterministic, the generation
follows the routed servers).

After an intended template change, regenerate the golden files and review the diff before committing:

    LBGEN_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py

tests/test_render_validate.py checks every golden file with the real nginx and HAProxy binaries.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbgen.config import parse_config
from lbgen.model import Backend, Inventory, Maintenance
from lbgen.render import GENERATION_PLACEHOLDER, LiveMeta, Rendered, parse_meta, render
from lbgen.routing import build_pools

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("LBGEN_UPDATE_GOLDEN") == "1"
SUFFIX = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg"}
KINDS = ("nginx", "haproxy")


def backend(service: str, name: str, address: str, *, env: str | None = None, port: int = 8080,
            weight: int = 1, backup: bool = False) -> Backend:
    return Backend(service=service, env=env, name=name, id=f"id-{name}", address=address, port=port,
                   weight=weight, backup=backup)


@dataclass(frozen=True)
class Scenario:
    services: str  # the `services:` mapping of lbgen.yaml, indented by two spaces
    backends: tuple[Backend, ...]
    proxy: str = ""  # more keys of `proxy:`, indented by two spaces
    maintenance: tuple[tuple[str, Maintenance], ...] = ()  # services in maintenance mode

    def config_text(self, kind: str) -> str:
        return (f"network: app-net\nproxy:\n  kind: {kind}\n  container: edge\n{self.proxy}"
                f"services:\n{self.services}")


# The longest host name lbgen.grammar takes: 253 characters, labels of at most 63.
LONGEST_HOST = ".".join(c * 63 for c in "abc") + "." + "d" * 61

SCENARIOS = {
    # The smallest useful setup: one service, defaults everywhere, blue live and green waiting.
    "minimal": Scenario(
        services="""\
  web:
    default_env: blue
""",
        backends=(
            backend("web", "web-blue-1", "172.20.0.11", env="blue"),
            backend("web", "web-blue-2", "172.20.0.12", env="blue"),
            backend("web", "web-green-1", "172.20.0.21", env="green"),
        ),
    ),
    # Every algorithm, with weights and a backup each: nginx cannot keep the backups of ip_hash, hash
    # and random (it leaves them out with a warning); HAProxy keeps them all.
    "algorithms": Scenario(
        services="""\
  rr:
    listen: 8001
  lc:
    listen: 8002
    algorithm: least_conn
  sticky:
    listen: 8003
    algorithm: ip_hash
  cache:
    listen: 8004
    algorithm: hash
    hash_key: $request_uri
  spread:
    listen: 8005
    algorithm: random
""",
        backends=tuple(
            b
            for i, svc in enumerate(("rr", "lc", "sticky", "cache", "spread"), start=1)
            for b in (
                backend(svc, f"{svc}-1", f"10.0.{i}.1", weight=3),
                backend(svc, f"{svc}-2", f"10.0.{i}.2"),
                backend(svc, f"{svc}-3", f"10.0.{i}.3", backup=True),
            )
        ),
    ),
    # The nginx hash keys lbgen supports, each translated to a HAProxy balance algorithm.
    "hash_keys": Scenario(
        services="".join(
            f"  {name}:\n    listen: {port}\n    algorithm: hash\n    hash_key: {key}\n"
            for name, port, key in (
                ("by-request-uri", 8101, "$request_uri"),
                ("by-uri", 8102, "$uri"),
                ("by-client", 8103, "$remote_addr"),
                ("by-header", 8104, "$http_x_tenant_id"),
                ("by-cookie", 8105, "$cookie_session_id"),
                ("by-arg", 8106, "$arg_user"),
            )
        ),
        backends=tuple(
            b
            for name in ("by-request-uri", "by-uri", "by-client", "by-header", "by-cookie", "by-arg")
            for b in (backend(name, f"{name}-1", "10.1.0.1"), backend(name, f"{name}-2", "10.1.0.2"))
        ),
    ),
    # Host routing and health settings:
    # - port 80: exact names, a wildcard under another service's (listed later, so HAProxy's rule order
    #   must come from specificity, not config order), and a host-less default;
    # - port 8080: host-routed services only (so unknown hosts get 404), one on IPv6, one with no
    #   backend at all;
    # - port 9000: a pool of backup servers only.
    "routing": Scenario(
        services="""\
  wild:
    hosts: ["*.example.com"]
  shop:
    hosts: [shop.example.com, www.shop.example.com, "*.shop.example.com"]
    algorithm: least_conn
    default_env: blue
    connect_timeout: 1500ms
    read_timeout: 30s
    retries: 0
    health:
      path: "/healthz?deep=1"
      expect_status: 2xx
      interval: 500ms
      timeout: 1s
      rise: 3
      fall: 5
  api:
    hosts: [api.example.com]
    read_timeout: 2m
    retries: 3
    health:
      expect_status: 204
      interval: 2s
  site:
    listen: 80
  admin:
    listen: 8080
    hosts: [admin.example.com]
  reports:
    listen: 8080
    hosts: [reports.example.com]
  legacy:
    listen: 9000
""",
        backends=(
            backend("shop", "shop-blue-1", "172.20.1.11", env="blue", weight=2),
            backend("shop", "shop-blue-2", "172.20.1.12", env="blue"),
            backend("shop", "shop-green-1", "172.20.1.21", env="green"),
            backend("wild", "wild-1", "172.20.3.11"),
            backend("api", "api-1", "172.20.2.11", port=9000),
            backend("site", "site-1", "172.20.4.11", port=80),
            backend("admin", "admin-1", "fd00:20::11", port=8443),
            backend("legacy", "legacy-1", "172.20.5.11", backup=True),
            backend("legacy", "legacy-2", "172.20.5.12", backup=True),
        ),
    ),
    # Path routing (lbgen.config_routes): on port 80 a host-less default with nested prefixes of other
    # host-less services, a host split by path (shop.example.com/api to shopapi, stripped), a wildcard
    # whose table inherits the host-less paths, a service without backends on a path; on port 8080 a
    # host with one path and no default (other paths and hosts: 404). Snippets in both proxies.
    "paths": Scenario(
        services="""\
  web:
    default_env: blue
  api:
    paths: [/api]
    strip_prefix: true
  apiv2:
    paths: [/api/v2, /static.files/]
    nginx_snippet: "client_max_body_size 1m;"
    haproxy_snippet: "http-request set-header X-Lbgen-Service apiv2"
  shop:
    hosts: [shop.example.com, "*.shop.example.com"]
    nginx_snippet: |
      client_max_body_size 50m;
      if ($request_method = TRACE) {
          return 405;
      }
    haproxy_snippet: |
      http-request deny deny_status 405 if { method TRACE }
      timeout server 90s
  shopapi:
    hosts: [shop.example.com]
    paths: [/api]
    strip_prefix: true
  empty:
    paths: [/maintenance-free]
  docs:
    listen: 8080
    hosts: [docs.example.com]
    paths: [/docs]
""",
        backends=(
            backend("web", "web-blue-1", "172.20.9.11", env="blue"),
            backend("web", "web-green-1", "172.20.9.21", env="green"),
            backend("api", "api-1", "172.20.9.31"),
            backend("apiv2", "apiv2-1", "172.20.9.41"),
            backend("shop", "shop-1", "172.20.9.51"),
            backend("shopapi", "shopapi-1", "172.20.9.61"),
            backend("docs", "docs-1", "172.20.9.71"),
        ),
    ),
    # Maintenance mode: a path-routed service and a host-routed one answer 503 with their message and
    # Retry-After; their backends stay in the config (HAProxy keeps checking them).
    "maintenance": Scenario(
        services="""\
  web:
    default_env: blue
  api:
    paths: [/api]
  shop:
    hosts: [shop.example.com]
""",
        backends=(
            backend("web", "web-blue-1", "172.20.10.11", env="blue"),
            backend("api", "api-1", "172.20.10.21"),
            backend("shop", "shop-1", "172.20.10.31"),
        ),
        maintenance=(("api", Maintenance('Back at 10:00 "UTC" ($5 off)', 300, "2024-05-01T09:00:00Z")),
                     ("shop", Maintenance("Down for maintenance", 3600, "2024-05-01T09:00:00Z"))),
    ),
    # WebSockets and apps that check Host: an upgrade idle limit per service, the drain limit of old
    # HAProxy workers, and the Host / headers of health checks (explicit, from `hosts`, or none).
    "websocket_host": Scenario(
        proxy="  drain_timeout: 15m\n",
        services="""\
  chat:
    hosts: [chat.example.com]
    websocket_timeout: 2h
    read_timeout: 20s
  shop:
    hosts: ["*.shop.example.com", shop.example.com]
    listen: 8080
    health:
      path: /healthz
      headers: {X-Health-Token: "s3cret 100%", Accept: text/plain}
  admin:
    listen: 8081
    health:
      host: "admin.internal:8081"
""",
        backends=(
            backend("chat", "chat-1", "172.20.6.11"),
            backend("chat", "chat-2", "172.20.6.12"),
            backend("shop", "shop-1", "172.20.7.11"),
            backend("admin", "admin-1", "172.20.8.11"),
        ),
    ),
    # Host names longer than nginx's default server_names_hash_bucket_size holds (46 characters): a
    # realistic 50-character name (its first exact name is also the Host of the checks), a wildcard with a
    # 63-character label, and the longest name lbgen takes (253 characters), which needs 512 bytes.
    "long_hosts": Scenario(
        services=f"""\
  api:
    hosts: [my-service-name.staging.eu-west-1.example.internal, "*.{"wildcard-label-".ljust(63, "w")}.example.com"]
  archive:
    hosts: [{LONGEST_HOST}]
  site:
    listen: 80
""",
        backends=(
            backend("api", "api-1", "172.20.11.11"),
            backend("archive", "archive-1", "172.20.11.21"),
            backend("site", "site-1", "172.20.11.31"),
        ),
    ),
}


def render_backends(scenario: Scenario, kind: str, backends: tuple[Backend, ...],
                    active: dict[str, str | None] | None = None) -> Rendered:
    config = parse_config(scenario.config_text(kind))
    return render(config, build_pools(config, Inventory(backends=backends), active),
                  maintenance=dict(scenario.maintenance))


def render_scenario(name: str, kind: str) -> Rendered:
    scenario = SCENARIOS[name]
    return render_backends(scenario, kind, scenario.backends)


def assert_matches_golden(text: str, path: Path) -> None:
    if UPDATE_GOLDEN:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run LBGEN_UPDATE_GOLDEN=1 python -m pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), (
        f"rendered output differs from {path.name}; if the change is intended, regenerate with "
        f"LBGEN_UPDATE_GOLDEN=1 and review the diff"
    )


def lines_of(text: str, section: str) -> list[str]:
    """The lines of one HAProxy section (`frontend port_80`), without the header."""
    block = text.split(f"\n{section}\n", 1)[1]
    return block.split("\n\n", 1)[0].splitlines()


# --- golden files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("kind", KINDS)
def test_rendered_config_matches_golden_file(kind, name):
    rendered = render_scenario(name, kind)
    assert_matches_golden(rendered.text, GOLDEN / f"{name}.{SUFFIX[kind]}")


def test_every_golden_file_belongs_to_a_scenario():
    expected = {f"{name}.{SUFFIX[kind]}" for name in SCENARIOS for kind in KINDS}
    # tls*.conf / tls*.cfg belong to tests/test_tls.py, tcp.* to tests/test_tcp.py, which check them the same way.
    assert {p.name for p in GOLDEN.iterdir() if p.suffix in (".conf", ".cfg") and not p.name.startswith(("tls", "tcp.", "canary_"))} \
        == expected


# --- backups -------------------------------------------------------------------------------------------

def test_nginx_leaves_out_backups_for_ip_hash_hash_and_random_with_a_warning():
    rendered = render_scenario("algorithms", "nginx")
    assert rendered.warnings == (
        "service sticky: nginx cannot use backup servers with ip_hash; left out sticky-3",
        "service cache: nginx cannot use backup servers with hash; left out cache-3",
        "service spread: nginx cannot use backup servers with random; left out spread-3",
    )
    for dropped in ("10.0.3.3", "10.0.4.3", "10.0.5.3"):
        assert dropped not in rendered.text
    assert "    server 10.0.1.3:8080 weight=1 max_fails=3 fail_timeout=3s backup;  # rr-3 env=-\n" in rendered.text
    assert "    server 10.0.2.3:8080 weight=1 max_fails=3 fail_timeout=3s backup;  # lc-3 env=-\n" in rendered.text


def test_haproxy_keeps_every_backup_and_spreads_traffic_over_all_of_them():
    rendered = render_scenario("algorithms", "haproxy")
    assert rendered.warnings == ()
    for i, svc in enumerate(("rr", "lc", "sticky", "cache", "spread"), start=1):
        backend_lines = lines_of(rendered.text, f"backend lbgen_{svc}")
        assert f"    server {svc}-3 10.0.{i}.3:8080 weight 1 backup  # env=-" in backend_lines
        assert "    option allbackups" in backend_lines


def test_nginx_lists_a_pool_of_backups_only_as_ordinary_servers():
    # nginx refuses an upstream whose servers are all backups; those would carry all traffic anyway.
    text = render_scenario("routing", "nginx").text
    upstream = text.split("upstream lbgen_legacy {\n", 1)[1].split("}\n", 1)[0]
    assert [line for line in upstream.splitlines() if line.lstrip().startswith("server ")] == [
        "    server 172.20.5.11:8080 weight=1 max_fails=3 fail_timeout=3s;  # legacy-1 env=-",
        "    server 172.20.5.12:8080 weight=1 max_fails=3 fail_timeout=3s;  # legacy-2 env=-",
    ]


# --- routing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, balance", [
    ("$request_uri", "balance uri path-only whole"),
    ("$uri", "balance uri path-only"),
    ("$remote_addr", "balance source"),
    ("$http_x_tenant_id", "balance hdr(x-tenant-id)"),
    ("$cookie_session_id", "balance hash req.cook(session_id)"),
    ("$arg_user", "balance url_param user"),
])
def test_hash_key_is_used_as_is_by_nginx_and_translated_for_haproxy(key, balance):
    nginx = render_scenario("hash_keys", "nginx").text
    haproxy = render_scenario("hash_keys", "haproxy").text
    assert f"    hash {key} consistent;\n" in nginx
    assert f"    {balance}\n    hash-type consistent\n" in haproxy


def test_haproxy_tries_exact_hosts_first_then_wildcards_longest_first_like_nginx():
    text = render_scenario("routing", "haproxy").text
    rules = [line.strip() for line in lines_of(text, "frontend port_80") if "use_backend" in line or
             "default_backend" in line]
    host = "req.hdr(host),field(1,:),lower"
    assert rules == [
        f"use_backend lbgen_shop if {{ {host} -m str shop.example.com www.shop.example.com }}",
        f"use_backend lbgen_api if {{ {host} -m str api.example.com }}",
        f"use_backend lbgen_shop if {{ {host} -m end .shop.example.com }}",
        f"use_backend lbgen_wild if {{ {host} -m end .example.com }}",
        "default_backend lbgen_site",
    ]


def test_nginx_port_with_only_host_routed_services_answers_404_for_other_hosts():
    text = render_scenario("routing", "nginx").text
    assert ("server {\n    listen 8080 default_server;\n    server_name _;\n    location / {\n"
            "        default_type text/plain;\n"
            '        return 404 "no service for this host on port 8080";\n') in text
    assert ("listen 80 default_server;\n    server_name _;\n    location / {\n"
            "        error_page 418 = @lbgen_upgrade_site;\n") in text
    default_server = text.split("listen 80 default_server;", 1)[1].split("\n}\n", 1)[0]
    assert default_server.count("proxy_pass http://lbgen_site;") == 2  # location / and @lbgen_upgrade


@pytest.mark.parametrize("kind", KINDS)
def test_service_without_backends_answers_503(kind):
    text = render_scenario("routing", kind).text
    body = '"no backend available for service reports"'
    if kind == "nginx":
        assert "upstream lbgen_reports" not in text
        assert "server_name reports.example.com;\n    location / {\n" in text
        assert f"        return 503 {body};\n" in text
    else:
        assert lines_of(text, "backend lbgen_reports") == [
            f"    http-request return status 503 content-type text/plain string {body}"
        ]


# --- long host names -----------------------------------------------------------------------------------

def host_of(length: int) -> str:
    """An exact host name of `length` characters (labels of 39)."""
    return (("x" * 39 + ".") * 7)[:length]


# (hosts, the server_names_hash_bucket_size nginx needs for them; None: its default, 64)
HOST_LENGTH_CASES = [
    ([host_of(46)], None),
    ([host_of(47)], 128),
    ([host_of(110), "short.example.com"], 128),
    ([host_of(111)], 256),
    ([LONGEST_HOST], 512),
    (["*." + "w" * 46 + ".example.com"], None),  # a wildcard is hashed label by label
    (["*." + "w" * 47 + ".example.com"], 128),
    (["*." + host_of(251)], None),  # 253 characters, no label over 39
]
HOST_LENGTH_IDS = ["46", "47", "110", "111", "253", "wildcard-46", "wildcard-47", "wildcard-253"]


def render_hosts(kind: str, hosts: list[str]) -> Rendered:
    """A host-routed service with these names beside a host-less default on port 80."""
    names = ", ".join(f'"{h}"' for h in hosts)
    scenario = Scenario(services=f"  web:\n    hosts: [{names}]\n  site:\n    listen: 80\n",
                        backends=(backend("web", "web-1", "172.20.12.11"), backend("site", "site-1", "172.20.12.21")))
    return render_backends(scenario, kind, scenario.backends)


@pytest.mark.parametrize("hosts, size", HOST_LENGTH_CASES, ids=HOST_LENGTH_IDS)
def test_nginx_sets_server_names_hash_bucket_size_only_when_a_host_needs_more_than_its_default(hosts, size):
    text = render_hosts("nginx", hosts).text
    if size is None:
        assert "server_names_hash_bucket_size" not in text
    else:
        assert text.count("server_names_hash_bucket_size") == 1
        assert f"\nserver_names_hash_bucket_size {size};\n" in text
    assert "server_names_hash_bucket_size" not in render_hosts("haproxy", hosts).text


def random_hosts(count: int, length: int, seed: int) -> list[str]:
    """`count` distinct exact host names of `length` characters, random but the same for a seed."""
    rng = random.Random(seed)
    hosts: set[str] = set()
    while len(hosts) < count:
        hosts.add("h" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(length - 4)) + ".io")
    return sorted(hosts)


# (hosts, the server_names_hash_bucket_size and _max_size nginx needs for them; None: its default)
MANY_HOSTS_CASES = [
    (random_hosts(15, 20, 1), None, None),  # with the default server's `_`: 16 names, nginx's defaults hold them
    (random_hosts(16, 20, 2), 256, None),  # 17: four 32-byte names to a bucket
    (random_hosts(16, 10, 3), 128, None),  # four 24-byte names
    (random_hosts(16, 47, 4), 512, None),  # four 64-byte names
    (random_hosts(300, 30, 5), 256, 1204),  # and 4 table slots per name
    (random_hosts(2000, 46, 6), 256, 8004),
]
MANY_HOSTS_IDS = ["15", "16", "16-short", "16-long", "300", "2000"]


@pytest.mark.parametrize("hosts, bucket, max_size", MANY_HOSTS_CASES, ids=MANY_HOSTS_IDS)
def test_nginx_sizes_the_server_names_hash_for_many_names(hosts, bucket, max_size):
    text = render_hosts("nginx", hosts).text
    for directive, value in (("server_names_hash_bucket_size", bucket), ("server_names_hash_max_size", max_size)):
        if value is None:
            assert directive not in text
        else:
            assert text.count(directive) == 1 and f"\n{directive} {value};\n" in text


# --- meta header, status body, generation -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_meta_comment_is_the_first_line_and_parses_back(kind):
    rendered = render_scenario("routing", kind)
    active = {"wild": None, "shop": "blue", "api": None, "site": None, "admin": None, "reports": None,
              "legacy": None}
    assert rendered.text.splitlines()[0].startswith("# lbgen-meta: {")
    routed = {"wild": {"wild-1"}, "shop": {"shop-blue-1", "shop-blue-2"}, "api": {"api-1"}, "site": {"site-1"},
              "admin": {"admin-1"}, "reports": set(), "legacy": {"legacy-1", "legacy-2"}}
    assert parse_meta(rendered.text) == LiveMeta(generation=rendered.generation, active=active,
                                                 routed={k: frozenset(v) for k, v in routed.items()})
    # Every service is listed with its env, even one with nothing to route, right after the meta line.
    assert rendered.text.splitlines()[1:8] == [f"# lbgen-pool: {' '.join([k, active[k] or '-', *sorted(v)])}"
                                               for k, v in routed.items()]
    assert rendered.active == active
    assert re.fullmatch(r"[0-9a-f]{12}", rendered.generation)
    assert GENERATION_PLACEHOLDER not in rendered.text


@pytest.mark.parametrize("kind", KINDS)
def test_status_listener_answers_the_generation(kind):
    rendered = render_scenario("routing", kind)
    body = (f'"lbgen generation={rendered.generation} wild=- shop=blue api=- site=- admin=- reports=- '
            f'legacy=-"')
    if kind == "nginx":
        assert ("server {\n    listen 9180;\n    access_log off;\n    location = /lbgen/status {\n"
                f"        default_type text/plain;\n        return 200 {body};\n") in rendered.text
    else:
        assert lines_of(rendered.text, "frontend lbgen_status") == [
            "    bind :9180",
            "    http-request set-log-level silent",
            f"    http-request return status 200 content-type text/plain string {body} if {{ path /lbgen/status }}",
            "    http-request return status 404",
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_rendering_is_byte_identical_whatever_the_discovery_order(kind):
    scenario = SCENARIOS["routing"]
    first = render_backends(scenario, kind, scenario.backends)
    again = render_backends(scenario, kind, scenario.backends)
    shuffled = render_backends(scenario, kind, scenario.backends[::-1])
    assert first == again
    assert shuffled.text == first.text
    assert shuffled.generation == first.generation


CHANGES = {
    "weight": lambda b: dataclasses.replace(b, weight=5),
    "address": lambda b: dataclasses.replace(b, address="172.20.1.99"),
    "port": lambda b: dataclasses.replace(b, port=8081),
    "backup": lambda b: dataclasses.replace(b, backup=True),
    "name": lambda b: dataclasses.replace(b, name="shop-blue-9"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("kind", KINDS)
def test_generation_changes_when_a_server_changes(kind, change):
    scenario = SCENARIOS["routing"]
    changed = (CHANGES[change](scenario.backends[0]),) + scenario.backends[1:]
    before = render_backends(scenario, kind, scenario.backends)
    after = render_backends(scenario, kind, changed)
    assert after.generation != before.generation
    assert parse_meta(after.text).generation == after.generation


@pytest.mark.parametrize("kind", KINDS)
def test_generation_changes_when_a_server_leaves_or_the_active_env_switches(kind):
    scenario = SCENARIOS["routing"]
    before = render_backends(scenario, kind, scenario.backends)
    without = render_backends(scenario, kind, scenario.backends[1:])
    green = render_backends(scenario, kind, scenario.backends, active={"shop": "green"})
    assert len({before.generation, without.generation, green.generation}) == 3
    assert "172.20.1.11" in before.text and "172.20.1.11" not in without.text
    assert "172.20.1.21" not in before.text and "172.20.1.21" in green.text
    assert green.active["shop"] == "green"


def test_a_server_outside_the_active_env_changes_nothing():
    # Starting a green container while blue is live must not rewrite (or reload) the proxy config.
    scenario = SCENARIOS["minimal"]
    extra = backend("web", "web-green-2", "172.20.0.22", env="green")
    for kind in KINDS:
        before = render_backends(scenario, kind, scenario.backends)
        after = render_backends(scenario, kind, scenario.backends + (extra,))
        assert after.text == before.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_thousand_services_keep_every_line_short_enough_for_the_proxy(kind, tmp_path):
    """nginx refuses a token (a comment line too) over its 4 KiB buffer: the meta header, the pool lines and
    the status answer stay short however many services and backends there are."""
    lines = ["network: n", f"proxy: {{kind: {kind}, container: edge}}", "services:"]
    lines += [f"  s{i:04d}: {{hosts: [s{i:04d}.example.com], default_env: blue}}" for i in range(1000)]
    config = parse_config("\n".join(lines) + "\n")
    backends = tuple(Backend(f"s{i:04d}", "blue", f"s{i:04d}-backend-with-a-long-name-{j:03d}", f"id{i}-{j}",
                             "10.0.0.1", 8080) for i in range(1000) for j in range(60))
    rendered = render(config, build_pools(config, Inventory(backends)))
    assert max(len(line) for line in rendered.text.splitlines()) < 2000
    meta = parse_meta(rendered.text)
    assert meta is not None and meta.routed is not None
    assert meta.routed["s0999"] == frozenset(b.name for b in backends if b.service == "s0999")
    assert meta.active == {f"s{i:04d}": "blue" for i in range(1000)}
    assert "(+960 more services)" in rendered.text


def test_a_config_from_an_older_lbgen_still_parses():
    old = '# lbgen-meta: {"active":{"web":"green"},"generation":"0123456789ab"}\nupstream x {}\n'
    assert parse_meta(old) == LiveMeta("0123456789ab", {"web": "green"}, None)
