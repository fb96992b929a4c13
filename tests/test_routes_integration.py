"""Path routing and snippets through the real nginx and HAProxy (tests/images/routes/routeapp.py: a
backend that says which path it received and reads request bodies)."""
from __future__ import annotations

import http.client
import textwrap

import pytest

from lbgen.errors import ProxyRejectedConfig
from scenario import Scenario

KINDS = ["nginx", "haproxy"]
HEALTH = "health: {path: /health, interval: 200ms, timeout: 1s, rise: 1, fall: 2}"
SNIPPETS = {
    "nginx": "nginx_snippet: 'client_max_body_size 1k;'",
    "haproxy": "haproxy_snippet: 'http-request deny deny_status 413 if { req.hdr_val(content-length) gt 1024 }'",
}
BROKEN = {"nginx": "nginx_snippet: 'client_max_body_size lots;'", "haproxy": "haproxy_snippet: 'timeout server forever'"}


def request(ip: str, path: str, host: str = "www.example.org", body: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(ip, 80, timeout=5)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def routed(ip: str, path: str, host: str = "www.example.org") -> tuple[str, str]:
    """(the service whose backend answered, the path it received)."""
    status, body = request(ip, path, host)
    assert status == 200, (path, host, status, body)
    fields = dict(item.split("=", 1) for item in body.split())
    return fields["name"].rsplit("-", 1)[0].split("route-", 1)[1], fields["path"]


def paths_scenario(lab, tmp_path, kind: str, snippet: str) -> Scenario:
    s = Scenario(lab, tmp_path, kind, blue=0, green=0)
    image = lab.derived_image("routes")
    for service in ("web", "api", "v2", "shop", "shopapi"):
        lab.backend(s.net, service, None, name=f"route-{service}-1", image=image)
    services = f"""\
        web: {{{HEALTH}}}
        api:
          paths: [/api]
          strip_prefix: true
          {snippet}
          {HEALTH}
        v2:
          paths: [/api/v2]
          {HEALTH}
        shop:
          hosts: [shop.example.com]
          {HEALTH}
        shopapi:
          hosts: [shop.example.com]
          paths: [/api]
          strip_prefix: true
          {HEALTH}
    """
    s.config_path.write_text(
        f"network: {s.net}\nlabel_prefix: {lab.label_prefix}\n"
        f"proxy:\n  kind: {kind}\n  container: {s.proxy.name}\nservices:\n"
        + textwrap.indent(textwrap.dedent(services), "  "))
    return s


@pytest.mark.parametrize("kind", KINDS)
def test_overlapping_prefixes_and_hosts_reach_the_same_services_on_both_proxies(lab, tmp_path, kind):
    s = paths_scenario(lab, tmp_path, kind, SNIPPETS[kind])
    s.app().apply()
    ip = s.proxy_ip
    lab.wait_http(f"http://{ip}/", timeout=10)
    assert routed(ip, "/") == ("web", "/")
    assert routed(ip, "/apiary") == ("web", "/apiary")  # whole segments: /apiary is not /api
    assert routed(ip, "/api") == ("api", "/")  # strip_prefix
    assert routed(ip, "/api/users?id=7") == ("api", "/users?id=7")
    assert routed(ip, "/api/v2") == ("v2", "/api/v2")  # the longest prefix wins, not stripped
    assert routed(ip, "/api/v2/items") == ("v2", "/api/v2/items")
    assert routed(ip, "/api/v20") == ("api", "/v20")
    # A host split by path: its own / and /api, and the host-less /api/v2 (longer) still reaches v2.
    assert routed(ip, "/", "shop.example.com") == ("shop", "/")
    assert routed(ip, "/cart", "shop.example.com:80") == ("shop", "/cart")
    assert routed(ip, "/api/orders", "shop.example.com") == ("shopapi", "/orders")
    assert routed(ip, "/api/v2/x", "shop.example.com") == ("v2", "/api/v2/x")
    # The snippet limits request bodies of api only.
    assert request(ip, "/api/upload", body=b"x" * 500)[0] == 200
    assert request(ip, "/api/upload", body=b"x" * 4000)[0] == 413
    assert request(ip, "/upload", body=b"x" * 4000)[0] == 200


@pytest.mark.parametrize("kind", KINDS)
def test_a_snippet_the_proxy_rejects_is_refused_and_the_live_config_stays(lab, tmp_path, kind):
    s = paths_scenario(lab, tmp_path, kind, SNIPPETS[kind])
    s.app().apply()
    live = s.live()
    s = paths_scenario_rewrite(s, SNIPPETS[kind], BROKEN[kind])
    with pytest.raises(ProxyRejectedConfig) as info:
        s.app().apply()
    # the proxy's own error, quoted
    assert ('"client_max_body_size" directive invalid value' if kind == "nginx" else "timeout server") in str(info.value)
    assert s.live() == live
    assert routed(s.proxy_ip, "/api/x") == ("api", "/x")


def paths_scenario_rewrite(s: Scenario, old: str, new: str) -> Scenario:
    s.config_path.write_text(s.config_path.read_text().replace(old, new))
    return s
