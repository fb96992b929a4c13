"""TLS without Docker: certificates checked before anything goes live, lbgen.yaml's tls rules, rendering
(golden files, checked by the real binaries in test_render_validate.py), delivery of the files through the
Engine seam (a FakeProxy runs the real install script), and expiry in `lbgen health`'s report."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from fakeproxy import FakeProxy
from lbgen.certs import CertInfo, CertPair, cert_info, load_pair
from lbgen.config import parse_config
from lbgen.core import Core
from lbgen.errors import CertificateError, ConfigError, ProxyRejectedConfig
from lbgen.expiry import served_certs
from lbgen.model import Backend, Inventory
from lbgen.report import HealthReport
from lbgen.render import parse_meta, render
from lbgen.routing import build_pools
from tlscerts import PrivateCA

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("LBGEN_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return PrivateCA(tmp_path_factory.mktemp("ca"))


def yaml_for(kind: str, tls: str, hosts: str = "[shop.example.com, '*.shop.example.com']", extra: str = "") -> str:
    return (f"network: lbnet\nproxy: {{kind: {kind}, container: proxy}}\nservices:\n"
            f"  shop:\n    default_env: blue\n    hosts: {hosts}\n    tls: {tls}\n{extra}")


# --- certificates ---------------------------------------------------------------------------------

def test_cert_info_reads_dates_and_names_as_openssl_wrote_them(ca):
    leaf = ca.leaf("shop", "shop.example.com", "*.shop.example.com", days=10)
    info = cert_info(leaf.cert.read_bytes())
    assert info.names == ("shop.example.com", "*.shop.example.com")
    assert 9.9 < info.days_left(time.time()) <= 10.0
    assert info.covers("shop.example.com") and info.covers("a.shop.example.com")
    assert info.covers("*.shop.example.com")
    assert not info.covers("a.b.shop.example.com") and not info.covers("example.com")


def test_a_chain_expires_when_its_first_certificate_does(ca):
    leaf = ca.leaf("chain", "chain.example.com", days=20)
    chain = leaf.cert.read_bytes() + ca.cert.read_bytes()  # the CA cert is valid for 30 days
    assert cert_info(chain).not_after == cert_info(leaf.cert.read_bytes()).not_after
    short = ca.leaf("short", "short.example.com", days=2)
    assert cert_info(leaf.cert.read_bytes() + short.cert.read_bytes()).not_after == \
        cert_info(short.cert.read_bytes()).not_after


def load(cert: Path, key: Path):
    return load_pair(cert, key, shown_cert=cert.name, shown_key=key.name, where="services.shop.tls")


def test_a_good_pair_loads_and_its_digest_follows_both_files(ca, tmp_path):
    a, b = ca.leaf("a", "a.example.com"), ca.leaf("b", "b.example.com")
    pair = load(a.cert, a.key)
    assert pair.digest == load(a.cert, a.key).digest and pair.digest != load(b.cert, b.key).digest
    assert a.key.read_bytes() not in repr(pair).encode() and "PRIVATE" not in repr(pair)


@pytest.mark.parametrize("case, message", [
    ("missing cert", "services.shop.tls.cert: nope.pem: no such file"),
    ("missing key", "services.shop.tls.key: nope.key: no such file"),
    ("garbage cert", "services.shop.tls.cert: junk.pem: no PEM certificate in it"),
    ("broken base64", "services.shop.tls.cert: broken.pem: the certificate does not parse"),
    ("expired", "services.shop.tls.cert: {cert}: certificate expired on 2020-02-01 00:00:00 UTC"),
    ("mismatched key", "services.shop.tls.key: {key}: the key does not match the certificate {cert}"),
    ("key in cert file", "services.shop.tls.cert: both.pem: holds a private key"),
    ("garbage key", "services.shop.tls.key: junk.key: no PEM private key in it"),
])
def test_every_bad_pair_is_one_line_naming_the_file(ca, tmp_path, case, message):
    good = ca.leaf("good", "good.example.com")
    other = ca.leaf("other", "other.example.com")
    cert, key = good.cert, good.key
    if case == "missing cert":
        cert = tmp_path / "nope.pem"
    elif case == "missing key":
        key = tmp_path / "nope.key"
    elif case == "garbage cert":
        cert = tmp_path / "junk.pem"
        cert.write_text("hello\n")
    elif case == "broken base64":
        cert = tmp_path / "broken.pem"
        cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n")
    elif case == "expired":
        old = ca.expired("old", "old.example.com")
        cert, key = old.cert, old.key
    elif case == "mismatched key":
        key = other.key
    elif case == "key in cert file":
        cert = tmp_path / "both.pem"
        cert.write_bytes(good.cert.read_bytes() + good.key.read_bytes())
    elif case == "garbage key":
        key = tmp_path / "junk.key"
        key.write_text("hello\n")
    with pytest.raises(CertificateError) as e:
        load(cert, key)
    assert str(e.value).startswith(message.format(cert=cert.name, key=key.name)), str(e.value)
    assert "\n" not in str(e.value) and e.value.exit_code == 3


# --- lbgen.yaml -----------------------------------------------------------------------------------

def test_tls_keys_and_defaults(tmp_path):
    config = parse_config(yaml_for("nginx", "{cert: c/shop.pem, key: c/shop.key}"), base_dir=tmp_path)
    tls = config.services["shop"].tls
    assert (tls.listen, tls.redirect, tls.hsts, tls.warn_days) == (443, True, 0, 14)
    assert tls.cert_file == tmp_path / "c/shop.pem" and tls.cert == "c/shop.pem"


@pytest.mark.parametrize("tls, extra, message", [
    ("{cert: a.pem}", "", "services.shop.tls: missing required key 'key'"),
    ("{cert: a.pem, key: a.pem}", "", "services.shop.tls.key: the key must be a file of its own"),
    ("{cert: a.pem, key: a.key, hsts: yes}", "", "services.shop.tls.hsts: expected an integer"),
    ("{cert: a.pem, key: a.key, redirect: 1}", "", "services.shop.tls.redirect: expected true or false"),
    ("{cert: a.pem, key: a.key, listen: 80}", "", "services.shop.tls.listen: port 80 serves plain HTTP"),
    ("{cert: a.pem, key: a.key, listen: 9180}", "", "services.shop.tls.listen: port 9180 is proxy.status_port"),
    ("{cert: a.pem, key: a.key, ocsp: true}", "", "services.shop.tls.ocsp: unknown key"),
    ("{cert: a.pem, key: a.key}",
     "  other:\n    listen: 8080\n    hosts: [shop.example.com]\n    tls: {cert: b.pem, key: b.key}\n",
     "services.other.tls.cert: host shop.example.com on TLS port 443 has certificate a.pem in service shop"),
    ("{cert: a.pem, key: a.key}",
     "  other:\n    listen: 8080\n    hosts: [shop.example.com]\n    tls: {cert: a.pem, key: a.key}\n",
     "services.other.hosts: port 443 with host shop.example.com is already routed to service shop"),
])
def test_tls_config_errors_name_the_key(tls, extra, message):
    with pytest.raises(ConfigError) as e:
        parse_config(yaml_for("nginx", tls, extra=extra))
    assert message in str(e.value), str(e.value)


# --- rendering --------------------------------------------------------------------------------------

def fixed_pair(name: str, digest: str, names: tuple[str, ...]) -> CertPair:
    """A pair with fixed bytes and digest, so golden files do not change with each run's certificates."""
    return CertPair(f"certs/{name}.pem", f"certs/{name}.key", b"CERT", b"KEY",
                    CertInfo(1700000000.0, 1900000000.0, names), digest)


GOLDEN_YAML = """\
network: lbnet
proxy: {{kind: {kind}, container: proxy}}
services:
  shop:
    default_env: blue
    hosts: [shop.example.com, "*.shop.example.com"]
    tls: {{cert: certs/shop.pem, key: certs/shop.key, hsts: 31536000}}
  api:
    hosts: [api.example.com]
    tls: {{cert: certs/api.pem, key: certs/api.key, redirect: false}}
  www:
    tls: {{cert: certs/www.pem, key: certs/www.key, listen: 8443}}
"""
GOLDEN_CERTS = {"shop": fixed_pair("shop", "5a0b0c0d0e0f0a01", ("shop.example.com", "*.shop.example.com")),
                "api": fixed_pair("api", "a91b0c0d0e0f0a02", ("api.example.com",)),
                "www": fixed_pair("www", "3c0b0c0d0e0f0a03", ("www.example.com",))}


def golden_render(kind: str, version: tuple[int, ...] | None = None):
    config = parse_config(GOLDEN_YAML.format(kind=kind))
    inventory = Inventory([Backend("shop", "blue", "shop-blue-1", "id-s1", "10.20.0.11", 8080),
                           Backend("api", None, "api-1", "id-a1", "10.20.0.21", 9000),
                           Backend("www", None, "www-1", "id-w1", "10.20.0.31", 8000)])
    return render(config, build_pools(config, inventory, {}), certs=GOLDEN_CERTS, proxy_version=version)


def test_every_tls_golden_file_belongs_to_a_case():
    assert {p.name for p in GOLDEN.glob("tls*")} == {"tls.nginx.conf", "tls-http2-on.nginx.conf", "tls.haproxy.cfg"}


@pytest.mark.parametrize("kind, version, name", [
    ("nginx", (1, 22, 1), "tls.nginx.conf"),
    ("nginx", (1, 25, 1), "tls-http2-on.nginx.conf"),
    ("haproxy", (2, 6, 12), "tls.haproxy.cfg"),
])
def test_tls_golden(kind, version, name):
    text = golden_render(kind, version).text
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"differs from {name}; LBGEN_UPDATE_GOLDEN=1 to regenerate"


def test_the_text_names_files_by_digest_and_never_holds_key_bytes():
    rendered = golden_render("nginx")
    assert b"KEY" not in rendered.text.encode().replace(b"_KEY", b"").replace(b"KEY_", b"")
    paths = {f.path: f for f in rendered.files}
    assert sorted(paths) == sorted(f"/etc/nginx/conf.d/lbgen-tls/{p.digest}.pem{k}"
                                   for p in GOLDEN_CERTS.values() for k in ("", ".key"))
    assert all(f.secret == f.path.endswith(".key") for f in rendered.files)
    assert "KEY" not in repr(rendered.files)
    # The old nginx syntax when the version is unknown (it works on every version).
    assert "listen 443 ssl http2 default_server;" in rendered.text and "http2 on;" not in rendered.text
    meta = parse_meta(rendered.text)
    assert [(c.service, c.file, c.not_after) for c in meta.tls] == [
        (n, f"{p.digest}.pem", 1900000000.0) for n, p in GOLDEN_CERTS.items()]


def test_a_new_certificate_is_a_new_generation():
    before = golden_render("haproxy")
    certs = dict(GOLDEN_CERTS, shop=dataclasses.replace(GOLDEN_CERTS["shop"], digest="ffff0c0d0e0f0a01"))
    config = parse_config(GOLDEN_YAML.format(kind="haproxy"))
    after = render(config, build_pools(config, Inventory([]), {}), certs=certs)
    assert before.generation != after.generation and "ffff0c0d0e0f0a01.pem" in after.text


def test_a_certificate_not_covering_a_host_is_a_warning(ca, tmp_path):
    leaf = ca.leaf("narrow", "shop.example.com")
    config = parse_config(yaml_for("nginx", f"{{cert: {leaf.cert}, key: {leaf.key}}}"))
    rendered = render(config, build_pools(config, Inventory([]), {}))
    assert rendered.warnings == (f"service shop: certificate {leaf.cert} does not cover *.shop.example.com "
                                 f"(it names shop.example.com)",)


# --- delivery through the Engine seam -----------------------------------------------------------------

def tls_proxy(ca, tmp_path, kind: str = "haproxy", user: str = "", leaf=None) -> FakeProxy:
    leaf = leaf or ca.leaf("shop", "shop.example.com", "*.shop.example.com")
    (tmp_path / "shop.pem").write_bytes(leaf.cert.read_bytes())
    (tmp_path / "shop.key").write_bytes(leaf.key.read_bytes())
    p = FakeProxy(kind, config_text=yaml_for(kind, "{cert: shop.pem, key: shop.key}"))
    p.config = parse_config(yaml_for(kind, "{cert: shop.pem, key: shop.key}"), base_dir=tmp_path)
    if user:
        p.engine.add_proxy("proxy", kind, network="lbnet", address=p.info.networks["lbnet"], user=user)
        p.engine.files.setdefault(p.info.id, {})["/etc/passwd"] = b"root:x:0:0::/root:/bin/sh\nhaproxy:x:99:98::/:/bin/false\n"
    p.engine.exec_handlers["haproxy"] = lambda e, c, argv: _version_result("HAProxy version 2.6.12-1 2023/01/01")
    p.engine.exec_handlers["nginx"] = lambda e, c, argv: _version_result("nginx version: nginx/1.22.1")
    p.backend("shop-1", "blue")
    return p


def _version_result(text: str):
    from lbgen.engine import ExecResult
    return ExecResult(0, text)


def core_of(p: FakeProxy) -> Core:
    return Core(p.config, p.engine, get=p.get, sleep=lambda s: None)


def tls_files_on(p: FakeProxy) -> dict[str, bytes]:
    return {k: v for k, v in p.engine.files[p.info.id].items() if "/lbgen-tls/" in k}


def test_files_are_delivered_before_validation_with_the_key_private_to_the_proxy_user(ca, tmp_path):
    p = tls_proxy(ca, tmp_path, user="haproxy")
    seen_at_validation = {}
    p.validate = lambda data: (seen_at_validation.update(tls_files_on(p)) or True, "")
    result = core_of(p).converge()
    assert result.changed
    files = tls_files_on(p)
    key_path = next(k for k in files if k.endswith(".key"))
    cert_path = key_path[:-4]
    assert seen_at_validation == files and files[key_path] == (tmp_path / "shop.key").read_bytes()
    assert p.engine.modes[(p.info.id, key_path)] == 0o600 and p.engine.owners[(p.info.id, key_path)] == (99, 98)
    assert p.engine.modes[(p.info.id, cert_path)] == 0o644 and p.engine.owners[(p.info.id, cert_path)] == (0, 0)
    assert f"crt {cert_path} " in p.live().decode()


def test_rotation_keeps_the_previous_files_for_a_rollback_and_drops_older_ones(ca, tmp_path):
    p = tls_proxy(ca, tmp_path)
    core = core_of(p)
    generations = []
    for i in range(3):
        leaf = ca.leaf(f"r{i}", "shop.example.com", "*.shop.example.com")
        (tmp_path / "shop.pem").write_bytes(leaf.cert.read_bytes())
        (tmp_path / "shop.key").write_bytes(leaf.key.read_bytes())
        generations.append(core.converge().generation)
        assert p.serving == generations[-1]
    assert len(set(generations)) == 3
    live = parse_meta(p.live().decode()).tls[0].file
    prev = parse_meta(p.engine.read("proxy", p.path + ".lbgen-prev").decode()).tls[0].file
    assert sorted(Path(k).name for k in tls_files_on(p)) == sorted([live, live + ".key", prev, prev + ".key"])


@pytest.mark.parametrize("problem", ["expired", "mismatched key", "rejected by the proxy"])
def test_a_rejected_certificate_changes_nothing_live(ca, tmp_path, problem):
    p = tls_proxy(ca, tmp_path)
    core = core_of(p)
    core.converge()
    live, files = p.live(), tls_files_on(p)
    if problem == "expired":
        old = ca.expired("old", "shop.example.com")
        (tmp_path / "shop.pem").write_bytes(old.cert.read_bytes())
        (tmp_path / "shop.key").write_bytes(old.key.read_bytes())
        error = CertificateError
    elif problem == "mismatched key":
        (tmp_path / "shop.key").write_bytes(ca.leaf("x", "x.example.com").key.read_bytes())
        error = CertificateError
    else:
        leaf = ca.leaf("new", "shop.example.com", "*.shop.example.com")
        (tmp_path / "shop.pem").write_bytes(leaf.cert.read_bytes())
        (tmp_path / "shop.key").write_bytes(leaf.key.read_bytes())
        p.validate = lambda data: (False, "[ALERT] unable to load certificate")
        error = ProxyRejectedConfig
    with pytest.raises(error) as e:
        core.converge()
    assert e.value.exit_code == 3
    assert p.live() == live and tls_files_on(p) == files
    assert (tmp_path / "shop.key").read_bytes() not in str(e.value).encode()


def test_nginx_version_picks_the_http2_syntax(ca, tmp_path):
    p = tls_proxy(ca, tmp_path, kind="nginx")
    p.engine.exec_handlers["nginx"] = lambda e, c, argv: _version_result("nginx version: nginx/1.27.0")
    core_of(p).converge()
    text = p.live().decode()
    assert "http2 on;" in text and "listen 443 ssl default_server;" in text and " http2;" not in text


# --- expiry in the health report ---------------------------------------------------------------------

@pytest.mark.parametrize("days, status", [(30, 0), (10, 1), (2, 2), (-1, 2)])
def test_health_reports_days_left(days, status):
    config = parse_config(yaml_for("nginx", "{cert: a.pem, key: a.key, warn_days: 14}"))
    now = 1_800_000_000.0
    live = f'# lbgen-meta: {{"generation":"g","v":2}}\n# lbgen-pool: shop blue\n# lbgen-tls: shop ab12.pem {int(now + days * 86400)}\n'
    certs = served_certs(config, live, now)
    report = HealthReport(certs=certs, checked_at=now)
    assert report.status == status and report.exit_code == status
    assert json.loads(report.to_json())["certificates"]["shop"]["days_left"] == days
    from prometheus_client.parser import text_string_to_metric_families

    samples = [s for f in text_string_to_metric_families(report.prometheus()) for s in f.samples
               if s.name == "lbgen_tls_cert_expiry_timestamp_seconds"]
    assert [(s.labels, s.value) for s in samples] == [({"service": "shop", "file": "ab12.pem"}, now + days * 86400)]
    when = "expired" if days < 0 else f"expires in {days:.1f} days"
    assert f"shop: certificate {when}" in report.nagios()
    assert f"shop_cert_days={days:.2f};14;3" in report.nagios()


def test_the_tls_example_parses_and_its_hook_is_valid_sh():
    import subprocess

    example = Path(__file__).resolve().parent.parent / "examples" / "tls"
    config = parse_config((example / "lbgen.yaml").read_text(), base_dir=example)
    assert config.services["shop"].tls.hsts == 31536000 and config.services["shop"].tls.warn_days == 21
    assert subprocess.run(["sh", "-n", str(example / "deploy-hook.sh")]).returncode == 0


def test_doctor_shows_each_served_certificates_days_left(ca, tmp_path):
    from lbgen.doctor import diagnose
    from lbgen.model import OK as OK_, WARNING as WARNING_

    p = tls_proxy(ca, tmp_path, kind="haproxy")
    before = [c for c in diagnose(core_of(p)).checks if c.name.startswith("tls")]
    assert [(c.name, c.status, c.message) for c in before] == [
        ("tls", WARNING_, "no certificate served yet for shop")]
    core_of(p).converge()
    [check] = [c for c in diagnose(core_of(p)).checks if c.name.startswith("tls")]
    assert (check.name, check.status, check.fix) == ("tls shop", OK_, "")
    assert check.message.startswith("certificate expires in ")
