"""Routing by path (lbgen.config_routes): lbgen.yaml's `paths`, `strip_prefix` and snippets, the conflicts
refused, and the route table both templates render from."""
from __future__ import annotations

import re

import pytest

from lbgen import grammar
from lbgen.config import parse_config
from lbgen.config_routes import Route, host_tables, strip_regex
from lbgen.errors import ConfigError

HEAD = "network: app-net\nproxy:\n  kind: nginx\n  container: edge\nservices:\n"


def config(services: str):
    return parse_config(HEAD + services)


def error(services: str) -> str:
    with pytest.raises(ConfigError) as info:
        config(services)
    return str(info.value)


def table(services: str, port: int = 80) -> dict[tuple[str, ...], tuple[Route, ...]]:
    cfg = config(services)
    return {t.hosts: t.routes for t in host_tables([s for s in cfg.services.values() if s.listen == port])}


def test_services_without_hosts_share_a_port_when_their_paths_differ():
    cfg = config("  web: {}\n  api:\n    paths: [/api, /static/]\n    strip_prefix: true\n")
    assert cfg.services["web"].paths == ("/",)
    assert cfg.services["api"].paths == ("/api", "/static")  # one trailing slash dropped
    assert cfg.services["api"].strip_prefix is True


def test_two_services_claiming_the_same_host_and_path_are_a_config_error_naming_both():
    message = error("  web:\n    hosts: [a.example.com]\n    paths: [/api]\n"
                    "  api:\n    hosts: [b.example.com, a.example.com]\n    paths: [/x, /api]\n")
    assert message == ("lbgen.yaml:11: services.api.paths: port 80 with host a.example.com and path /api "
                       "is already routed to service web")


def test_the_same_path_on_different_hosts_or_ports_is_no_conflict():
    config("  web:\n    hosts: [a.example.com]\n    paths: [/api]\n"
           "  api:\n    hosts: [b.example.com]\n    paths: [/api]\n"
           "  other:\n    listen: 8080\n    paths: [/api]\n  root: {}\n")


@pytest.mark.parametrize("value,reason", [
    ("[/a/../b]", "is not a path prefix"),
    ("[api]", "is not a path prefix"),
    ("[/a//b]", "is not a path prefix"),
    ("['/%61pi']", "is not a path prefix"),
    ("[/api, /api/]", "item 1: path /api is listed twice"),
    ("[]", "expected at least one path prefix"),
    ("/api", "expected a list"),
])
def test_bad_paths_are_refused_with_the_key_path(value, reason):
    message = error(f"  web:\n    paths: {value}\n")
    assert "services.web.paths:" in message and reason in message


def test_strip_prefix_needs_paths():
    assert "services.web.strip_prefix: strip_prefix needs paths" in error("  web:\n    strip_prefix: true\n")


def test_longest_prefix_wins_and_hostless_paths_reach_every_host():
    routes = table("  web: {}\n  api:\n    paths: [/api]\n  v2:\n    paths: [/api/v2]\n"
                   "  shop:\n    hosts: [shop.example.com]\n  shopapi:\n    hosts: [shop.example.com]\n"
                   "    paths: [/api]\n  wild:\n    hosts: ['*.example.com']\n    paths: [/w]\n")
    assert routes[("shop.example.com",)] == (Route("/api/v2", "v2"), Route("/api", "shopapi"), Route("/w", "wild"),
                                             Route("/", "shop"))
    assert routes[("*.example.com",)] == (Route("/api/v2", "v2"), Route("/api", "api"), Route("/w", "wild"),
                                          Route("/", "web"))
    assert routes[()] == (Route("/api/v2", "v2"), Route("/api", "api"), Route("/", "web"))


def test_a_host_without_a_root_route_has_none_and_the_order_is_exact_then_longest_wildcard_then_default():
    cfg = config("  a:\n    hosts: ['*.example.com']\n    paths: [/a]\n  b:\n    hosts: ['*.x.example.com']\n"
                 "  c:\n    hosts: [c.example.com]\n    paths: [/c]\n")
    tables = host_tables(list(cfg.services.values()))
    assert [t.hosts for t in tables] == [("c.example.com",), ("*.x.example.com",), ("*.example.com",), ()]
    assert not tables[0].has_root and tables[1].has_root and tables[3].routes == ()


def test_services_splitting_a_tls_host_by_path_must_share_its_certificate(tmp_path):
    for name in ("a.pem", "a.key", "b.pem", "b.key"):
        (tmp_path / name).write_text("x")
    text = (HEAD + "  web:\n    hosts: [shop.example.com]\n    tls: {cert: a.pem, key: a.key}\n"
            "  api:\n    hosts: [shop.example.com]\n    paths: [/api]\n    tls: {cert: %s, key: %s}\n")
    parse_config(text % ("a.pem", "a.key"), base_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        parse_config(text % ("b.pem", "b.key"), base_dir=tmp_path)
    assert "services.api.tls.cert: host shop.example.com on TLS port 443 has certificate a.pem in service web" \
        in str(info.value)


def test_strip_regex_matches_whole_segments_longest_first():
    pattern = strip_regex(("/a", "/a/b.c"))
    assert pattern == "^(/a/b[.]c|/a)(/(.*))?$"
    rx = re.compile(pattern)
    assert "/" + (rx.fullmatch("/a/b.c/x").group(3) or "") == "/x"
    assert "/" + (rx.fullmatch("/a/b.cd").group(3) or "") == "/b.cd"
    assert "/" + (rx.fullmatch("/a").group(3) or "") == "/"


@pytest.mark.parametrize("kind,text,reason", [
    ("nginx", "client_max_body_size 1m; }", "closes a block"),
    ("nginx", "location / {\n  return 200;\n", "unclosed {"),
    ("nginx", "client_max_body_size 1m", "must end with a complete directive"),
    ("nginx", 'return 200 "x;', "unterminated quoted string"),
    ("nginx", "# lbgen-pool: web blue\nclient_max_body_size 1m;", "reserved for lbgen"),
    ("nginx", "client_max_body_size 1m;\x1b", "control character"),
    ("haproxy", "timeout server 5s\nbackend evil", "'backend' would open a new HAProxy section"),
    ("haproxy", "  frontend x", "would open a new HAProxy section"),
])
def test_snippets_that_could_break_out_of_their_block_are_refused(kind, text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        grammar.snippet(text, kind)


def test_snippets_with_nested_blocks_quotes_and_comments_are_accepted():
    text = 'if ($request_method = TRACE) {\n    return 405 "}";  # a } in a comment\n}\nclient_max_body_size 5m;\n'
    assert grammar.snippet(text, "nginx") == text
    assert grammar.snippet("http-request deny if { method TRACE }\n# backend is only a word here", "haproxy")


def test_a_bad_snippet_is_a_config_error_with_its_key_path():
    message = error("  web:\n    nginx_snippet: 'client_max_body_size 1m; }'\n")
    assert message.startswith("lbgen.yaml:7: services.web.nginx_snippet: a } closes a block")


def _host_tables_by_brute_force(services):
    """The route tables by the definition: every service looked at for every host (the square of them)."""
    from lbgen.config_routes import covers, specificity

    patterns = []
    for svc in services:
        patterns += [h for h in svc.hosts if h not in patterns]
    keys = [h for h in patterns if not h.startswith("*.")]
    keys += sorted((h for h in patterns if h.startswith("*.")), key=len, reverse=True) + [""]
    out = []
    for key in keys:
        best, owner = {}, None
        for svc in services:
            for pattern in svc.hosts or ("",):
                if covers(pattern, key):
                    owner = svc.name if pattern == key and owner is None else owner
                    for path in svc.paths:
                        if path not in best or specificity(pattern) > best[path][0]:
                            best[path] = (specificity(pattern), svc.name)
        routes = tuple(Route(p, s) for p, (_, s) in sorted(best.items(), key=lambda i: (-len(i[0]), i[0])))
        out.append(((key,) if key else (), routes, owner))
    return out


def test_host_tables_look_only_at_the_services_covering_each_host_with_the_same_result():
    """host_tables indexes services by host pattern (linear in the host names); it must agree with the
    definition on every mix of exact names, nested wildcards, defaults and overlapping paths."""
    import random
    from types import SimpleNamespace

    hosts = ["a.com", "b.a.com", "*.a.com", "*.com", "x.b.a.com", "*.b.a.com", "c.org", "*.org"]
    paths = ["/", "/api", "/api/v1", "/s"]
    rnd = random.Random(20261202)
    for _ in range(2000):
        services = [SimpleNamespace(name=f"s{i}", hosts=tuple(rnd.sample(hosts, rnd.randint(0, 3))),
                                    paths=tuple(rnd.sample(paths, rnd.randint(1, 3))))
                    for i in range(rnd.randint(1, 6))]
        got = [(t.hosts, t.routes, t.owner) for t in host_tables(services)]
        assert got == _host_tables_by_brute_force(services), services
