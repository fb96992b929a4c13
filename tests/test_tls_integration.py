"""TLS through the real nginx and HAProxy: SNI picks each service's certificate (a wildcard among them),
HTTP/2 is negotiated, plain HTTP is redirected (or not) as configured, HSTS is sent, a certificate is
rotated under keep-alive TLS load with no failed request, and every rejected certificate leaves the
live config byte-identical."""
from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import urllib3
from urllib3.util.retry import Retry

from lbgen.errors import CertificateError
from scenario import Scenario
from tlscerts import PrivateCA

KINDS = ["nginx", "haproxy"]


def tls_yaml(s: Scenario, shop_redirect: bool = True) -> str:
    return (f"network: {s.net}\nlabel_prefix: {s.lab.label_prefix}\n"
            f"proxy:\n  kind: {s.kind}\n  container: {s.proxy.name}\n"
            "services:\n"
            "  web:\n    listen: 80\n    default_env: blue\n"
            "    hosts: [shop.example.com, '*.shop.example.com']\n"
            "    health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}\n"
            f"    tls: {{cert: certs/shop.pem, key: certs/shop.key, hsts: 600, redirect: {str(shop_redirect).lower()}}}\n"
            "  api:\n    listen: 80\n    hosts: [api.example.com]\n"
            "    tls: {cert: certs/api.pem, key: certs/api.key, redirect: false}\n")


def install(leaf, directory, name):
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.pem").write_bytes(leaf.cert.read_bytes())
    (directory / f"{name}.key").write_bytes(leaf.key.read_bytes())


def handshake(ip: str, sni: str, ca: PrivateCA, port: int = 443) -> tuple[str | None, dict, str | None]:
    """A verified handshake (the certificate must be signed by the CA and name `sni`): ALPN, the peer
    certificate, the TLS version."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((ip, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=sni) as tls:
        return tls.selected_alpn_protocol(), tls.getpeercert(), tls.version()


def https_pool(ip: str, sni: str, ca: PrivateCA) -> urllib3.HTTPSConnectionPool:
    return urllib3.HTTPSConnectionPool(ip, 443, ca_certs=str(ca.cert), server_hostname=sni, assert_hostname=sni,
                                       maxsize=1, timeout=urllib3.Timeout(connect=2, read=5),
                                       retries=Retry(total=2, connect=2, read=1, status=0, redirect=0))


@pytest.fixture
def tls_setup(lab, tmp_path):
    def make(kind: str, **kw) -> tuple[Scenario, PrivateCA]:
        ca = PrivateCA(tmp_path / "ca")
        s = Scenario(lab, tmp_path, kind, blue=1, green=0)
        install(ca.leaf("shop", "shop.example.com", "*.shop.example.com"), tmp_path / "certs", "shop")
        install(ca.leaf("api", "api.example.com"), tmp_path / "certs", "api")
        s.config_path.write_text(tls_yaml(s, **kw))
        s.app().apply()
        return s, ca
    return make


@pytest.mark.parametrize("kind", KINDS)
def test_sni_http2_redirect_and_hsts(tls_setup, kind):
    s, ca = tls_setup(kind)
    ip = s.proxy_ip
    for sni, expected in (("shop.example.com", "shop.example.com"), ("x.shop.example.com", "shop.example.com"),
                          ("api.example.com", "api.example.com")):
        alpn, cert, version = handshake(ip, sni, ca)  # verification fails unless the certificate names sni
        assert alpn == "h2" and version in ("TLSv1.2", "TLSv1.3")
        assert dict(x[0] for x in cert["subject"])["commonName"] == expected
    # TLS 1.1 is refused.
    old = ssl.create_default_context(cafile=str(ca.cert))
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((ip, 443), timeout=5) as raw, old.wrap_socket(raw, server_hostname="shop.example.com"):
            pass
    # Through TLS: the backend answers, with HSTS for the shop and none for the api.
    r = https_pool(ip, "shop.example.com", ca).request("GET", "/x", headers={"Host": "shop.example.com"})
    assert r.status == 200 and b"env=blue" in r.data and r.headers["Strict-Transport-Security"] == "max-age=600"
    r = https_pool(ip, "api.example.com", ca).request("GET", "/", headers={"Host": "api.example.com"})
    assert r.status == 503 and "Strict-Transport-Security" not in r.headers
    # Plain HTTP: the shop redirects with 308 (method and body kept), the api (redirect: false) does not.
    plain = urllib3.HTTPConnectionPool(ip, 80, retries=False)
    r = plain.request("GET", "/a/b?c=1", headers={"Host": "Shop.Example.com"}, redirect=False)
    assert (r.status, r.headers["Location"]) == (308, "https://shop.example.com/a/b?c=1")
    r = plain.request("POST", "/form", body=b"x=1", headers={"Host": "a.shop.example.com"}, redirect=False)
    assert (r.status, r.headers["Location"]) == (308, "https://a.shop.example.com/form")
    assert plain.request("GET", "/", headers={"Host": "api.example.com"}, redirect=False).status == 503
    # The key is the proxy user's alone (root here), the certificate world-readable.
    live = s.live().decode()
    name = next(line.split()[3] for line in live.splitlines() if line.startswith("# lbgen-tls: web "))
    directory = s.config_file.rsplit("/", 1)[0] + "/lbgen-tls"
    modes = s.proxy.exec_run(["stat", "-c", "%a %u", f"{directory}/{name}", f"{directory}/{name}.key"]).output.decode()
    assert modes.split("\n")[:2] == ["644 0", "600 0"]
    # Health reports the served certificates' days left.
    report = s.app().health()
    assert {c.service for c in report.certs} == {"web", "api"} and all(29 < c.days_left <= 30 for c in report.certs)


@pytest.mark.parametrize("kind", KINDS)
def test_rotation_under_keep_alive_tls_load_fails_no_request(tls_setup, kind, tmp_path):
    s, ca = tls_setup(kind)
    ip = s.proxy_ip
    before = handshake(ip, "shop.example.com", ca)[1]["serialNumber"]
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        pool = https_pool(ip, "shop.example.com", ca)
        while not stop.is_set():
            try:
                ok = pool.request("GET", "/", headers={"Host": "shop.example.com"}).status == 200
                err = "" if ok else "status"
            except urllib3.exceptions.HTTPError as e:
                ok, err = False, repr(e)[:200]
            with lock:
                counts["ok" if ok else "failed"] += 1
                if err:
                    errors.append(err)
            time.sleep(0.002)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1)
    generations = []
    for i in range(2):
        install(ca.leaf(f"rot{i}", "shop.example.com", "*.shop.example.com"), tmp_path / "certs", "shop")
        result = s.app().apply()
        assert result.changed
        generations.append(result.generation)
        time.sleep(1)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    after = handshake(ip, "shop.example.com", ca)[1]["serialNumber"]
    assert after != before and len(set(generations)) == 2
    assert counts["failed"] == 0, errors[:5]
    assert counts["ok"] > 50


@pytest.mark.parametrize("kind", KINDS)
def test_every_rejected_certificate_leaves_the_live_config_untouched(tls_setup, kind, tmp_path):
    s, ca = tls_setup(kind)
    live = s.live()
    certs = tmp_path / "certs"
    good_key = (certs / "shop.key").read_bytes()
    cases = {
        "expired": lambda: install(ca.expired("old", "shop.example.com"), certs, "shop"),
        "mismatched": lambda: (certs / "shop.key").write_bytes(ca.leaf("x", "x.example.com").key.read_bytes()),
        "missing": lambda: (certs / "shop.key").unlink(),
        "unparsable": lambda: (certs / "shop.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    }
    for name, spoil in cases.items():
        install(ca.leaf("fresh", "shop.example.com", "*.shop.example.com"), certs, "shop")
        spoil()
        with pytest.raises(CertificateError) as e:
            s.app().apply()
        assert "certs/shop." in str(e.value) and e.value.exit_code == 3, name
        assert good_key not in str(e.value).encode()
        assert s.live() == live, f"{name}: the live config changed"
    assert handshake(s.proxy_ip, "shop.example.com", ca)[0] == "h2"
