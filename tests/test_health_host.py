"""The Host and headers of health checks (`health.host`, `health.headers`, the default from `hosts`), and the
WebSocket and drain settings: how lbgen.yaml reads them, what lbgen's checker sends, and what reaches the
HAProxy config, with hostile values judged by the real `haproxy -c`."""
from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbgen.config import HealthConfig, parse_config
from lbgen.errors import ConfigError
from lbgen.health import HttpChecker, http_get
from lbgen.model import Backend, Inventory
from lbgen.render import render
from lbgen.routing import build_pools
from testutil import real_binary

BASE = "network: app-net\nproxy:\n  kind: {kind}\n  container: edge\nservices:\n  web:\n"


def config(service: str = "", kind: str = "haproxy", proxy: str = ""):
    text = BASE.format(kind=kind).replace("services:\n", proxy + "services:\n") + service
    return parse_config(text)


def test_defaults_websocket_timeout_1h_drain_5m_and_no_host_without_hosts():
    c = config("    listen: 80\n")
    assert (c.services["web"].websocket_timeout, c.proxy.drain_timeout) == (3600.0, 300.0)
    assert (c.services["web"].health.host, c.services["web"].health.headers) == (None, ())
    assert c.services["web"].health.request_headers() == {}


def test_the_first_exact_host_is_the_default_host_of_checks():
    health = config('    hosts: ["*.example.com", shop.example.com, www.example.com]\n').services["web"].health
    assert health.host == "shop.example.com"
    assert config('    hosts: ["*.example.com"]\n').services["web"].health.host is None


def test_explicit_host_and_headers_win_and_keep_their_order():
    c = config("    hosts: [shop.example.com]\n    websocket_timeout: 90s\n"
               "    health:\n      host: 'internal:8000'\n      headers: {X-B: '2', X-A: 1}\n",
               proxy="  drain_timeout: 30m\n")
    health = c.services["web"].health
    assert health.request_headers() == {"Host": "internal:8000", "X-B": "2", "X-A": "1"}
    assert list(health.request_headers()) == ["Host", "X-B", "X-A"]
    assert (c.services["web"].websocket_timeout, c.proxy.drain_timeout) == (90.0, 1800.0)


@pytest.mark.parametrize("extra,message", [
    ("    websocket_timeout: 5x\n", "lbgen.yaml:7: services.web.websocket_timeout: '5x' is not a duration"),
    ("    health: {host: '*.example.com'}\n", "services.web.health.host: '*.example.com' is not a Host header"),
    ("    health: {host: 'a.example.com:0'}\n", "services.web.health.host: 'a.example.com:0' is not a Host header"),
    ("    health: {host: \"a\\r\\nX: y\"}\n", "services.web.health.host: 'a\\r\\nX: y' is not a Host header"),
    ("    health: {headers: [X-A]}\n", "services.web.health.headers: expected a mapping of header names"),
    ("    health: {headers: {'X A': b}}\n", "services.web.health.headers.X A: 'X A' is not an HTTP header name"),
    ("    health: {headers: {Host: b}}\n", "health.headers.Host: 'Host' cannot be set by a health check; use health.host"),
    ("    health: {headers: {Content-Length: '5'}}\n", "'Content-Length' cannot be set by a health check"),
    ("    health: {headers: {X-A: \"b\\nc\"}}\n", "health.headers.X-A: 'b\\nc' is not an HTTP header value"),
    ("    health: {headers: {X-A: ''}}\n", "health.headers.X-A: '' is not an HTTP header value"),
    ("    health: {headers: {X-A: 'é'}}\n", "is not an HTTP header value"),
    ("    health: {headers: {X-A: a, x-a: b}}\n", "health.headers.x-a: 'x-a' is given twice"),
])
def test_bad_values_name_the_key_path(extra, message):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.format(kind="nginx") + extra)
    assert message in str(info.value)


def test_drain_timeout_is_checked_like_other_durations():
    with pytest.raises(ConfigError, match="proxy.drain_timeout: '25h' is out of range"):
        config("    listen: 80\n", proxy="  drain_timeout: 25h\n")


def test_lbgens_checker_sends_the_host_and_headers():
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            ok = self.headers["Host"] == "shop.example.com"
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        b = Backend(service="web", env="blue", name="w1", id="i1", address="127.0.0.1", port=server.server_address[1])
        checker = HttpChecker(http_get)
        plain = checker.check(b, HealthConfig(timeout=2))
        assert (plain.ok, plain.detail) == (False, "HTTP 400 on /health")
        health = HealthConfig(timeout=2, host="shop.example.com", headers=(("X-Probe", "lbgen"),))
        assert checker.check(b, health).ok
        assert seen[-1]["Host"] == "shop.example.com" and seen[-1]["X-Probe"] == "lbgen"
        assert seen[-1]["Connection"] == "close"
    finally:
        server.shutdown()


def test_a_get_taking_only_url_and_timeout_still_serves_services_without_host():
    calls = []
    b = Backend(service="web", env="blue", name="w1", id="i1", address="10.0.0.1", port=80)
    result = HttpChecker(lambda url, timeout: calls.append(url) or (200, "")).check(b, HealthConfig())
    assert result.ok and calls == ["http://10.0.0.1:80/health"]


# --- hostile values against the real haproxy -c ---------------------------------------------------------

def haproxy_words(line: str) -> list[str]:
    """Split a HAProxy config line into words as HAProxy does: double quotes, and `\\` escaping inside them."""
    words, word, quoted, i, started = [], "", False, 0, False
    while i < len(line):
        c = line[i]
        if quoted and c == "\\" and i + 1 < len(line):
            word += line[i + 1]
            i += 2
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif c in " \t" and not quoted:
            if started:
                words.append(word)
            word, started = "", False
        elif c == "#" and not quoted:
            break
        else:
            word, started = word + c, True
        i += 1
    if started:
        words.append(word)
    return words


header_names = st.text(st.sampled_from("abcXYZ019!#$%&'*+.^_`|~-"), min_size=1, max_size=8)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20)
hostile = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=st.one_of(st.just(None), st.sampled_from(["a.example.com", "b.example.com:8080"]), hostile),
       headers=st.dictionaries(st.one_of(header_names, hostile), st.one_of(header_values, hostile), max_size=3))
def test_hostile_health_values_are_refused_or_reach_haproxy_exactly(tmp_path_factory, host, headers):
    import yaml

    health = {"path": "/health"}
    if host is not None:
        health["host"] = host
    if headers:
        health["headers"] = headers
    text = BASE.format(kind="haproxy") + yaml.safe_dump({"hosts": ["shop.example.com"], "health": health},
                                                        allow_unicode=True, sort_keys=False).replace("\n", "\n    ").rstrip() + "\n"
    text = text.replace("  web:\n", "  web:\n    ", 1)
    try:
        c = parse_config(text)
    except ConfigError as e:
        assert "services.web.health" in str(e) and "\n" not in str(e)
        return
    # Accepted: exactly the expected words reach HAProxy, and HAProxy accepts the config.
    backend = Backend(service="web", env=None, name="w1", id="i1", address="10.0.0.1", port=8080)
    rendered = render(c, build_pools(c, Inventory(backends=(backend,)), None)).text
    lines = [line for line in rendered.splitlines() if line.strip().startswith("http-check send")]
    assert len(lines) == 1
    expected = ["http-check", "send", "meth", "GET", "uri", "/health", "ver", "HTTP/1.1", "hdr", "Host",
                host or "shop.example.com"]
    for name, value in headers.items():
        expected += ["hdr", name, str(value).replace("%", "%%")]
    assert haproxy_words(lines[0]) == expected
    path = tmp_path_factory.mktemp("hc") / "haproxy.cfg"
    path.write_text(rendered)
    result = subprocess.run([real_binary("haproxy"), "-c", "-f", str(path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "[WARNING]" not in result.stdout + result.stderr, result.stdout + result.stderr



def test_quotes_backslashes_dollars_hashes_and_percents_reach_haproxy_as_written(tmp_path):
    value = 'a "b" \\ $c #d %[src] e'
    c = config("    hosts: [shop.example.com]\n    health:\n      headers: {X-T: '" + value + "', \"X!#$%&'*+.^_`|~\": v}\n")
    backend = Backend(service="web", env=None, name="w1", id="i1", address="10.0.0.1", port=8080)
    rendered = render(c, build_pools(c, Inventory(backends=(backend,)), None)).text
    line = next(line for line in rendered.splitlines() if "http-check send" in line)
    assert haproxy_words(line)[8:] == ["hdr", "Host", "shop.example.com", "hdr", "X-T", value.replace("%", "%%"),
                                       "hdr", "X!#$%&'*+.^_`|~", "v"]
    path = tmp_path / "haproxy.cfg"
    path.write_text(rendered)
    result = subprocess.run([real_binary("haproxy"), "-c", "-f", str(path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "[WARNING]" not in result.stdout + result.stderr, result.stdout + result.stderr
