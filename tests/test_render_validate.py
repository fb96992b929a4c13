"""Every golden config (tests/golden/) checked by the real nginx and HAProxy binaries on this machine.

nginx: the golden file is included inside http {} of a temporary main config, as conf.d/lbgen.conf is
by the stock nginx.conf, and tested with `nginx -t`; once with a bare http {} and once with the
http-level directives the official and Debian nginx.conf set, to catch a duplicate of one of them.
HAProxy: `haproxy -c -f FILE` (it binds nothing, the stats socket included).
Also: rendered configs with host names around nginx's server_names_hash_bucket_size limits.

A missing binary fails the test rather than skipping it: CI installs both.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_render import HOST_LENGTH_CASES, HOST_LENGTH_IDS, MANY_HOSTS_CASES, MANY_HOSTS_IDS, render_hosts
from tlscerts import PrivateCA

GOLDEN = Path(__file__).parent / "golden"
NGINX_GOLDEN = sorted(GOLDEN.glob("*.nginx.conf"))
HAPROXY_GOLDEN = sorted(GOLDEN.glob("*.haproxy.cfg"))
MAIN_GOLDEN = sorted(GOLDEN.glob("*.nginx-main.conf"))

# What the stock main configs already set in http {}: the official image's nginx.conf and Debian's.
STOCK_HTTP = """\
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    keepalive_timeout 65;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
"""


def binary(name: str) -> str:
    """The binary's path; /usr/sbin is searched too, as it is often outside a non-root PATH."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(["/usr/sbin", "/usr/local/sbin"]))
    if path is None:
        pytest.fail(f"{name} is not installed (looked in PATH, /usr/sbin, /usr/local/sbin); these tests "
                    f"validate the rendered configs with the real binary: install {name}", pytrace=False)
    return path


TLS_FILE_RE = re.compile(r"(/[A-Za-z0-9_./-]+/lbgen-tls)/([0-9a-f]{16}\.pem)")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return PrivateCA(tmp_path_factory.mktemp("ca"))


def with_certificates(golden: Path, tmp_path: Path, ca: PrivateCA) -> Path:
    """The golden file itself, or, when it serves TLS, a copy whose certificate files (named by digest under
    the proxy's lbgen-tls/) exist in tmp_path: a certificate from a private CA and its key beside it."""
    text = golden.read_text()
    found = TLS_FILE_RE.findall(text)
    if not found:
        return golden.resolve()
    directory = tmp_path / "lbgen-tls"
    directory.mkdir(exist_ok=True)
    for name in sorted({n for _, n in found}):
        leaf = ca.leaf(name[:8], f"{name[:8]}.example.com")
        (directory / name).write_bytes(leaf.cert.read_bytes())
        (directory / (name + ".key")).write_bytes(leaf.key.read_bytes())
    for prefix in {d for d, _ in found}:
        text = text.replace(prefix + "/", f"{directory}/")
    copy = tmp_path / golden.name
    copy.write_text(text)
    return copy


def test_golden_files_exist():
    assert NGINX_GOLDEN and HAPROXY_GOLDEN, f"no golden configs in {GOLDEN}"


def nginx_version(nginx: str) -> tuple[int, ...]:
    output = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30).stderr
    return tuple(int(p) for p in re.search(r"nginx/([0-9.]+)", output).group(1).split("."))


def nginx_main_config(prefix: Path, include: Path, stock: bool) -> str:
    # Everything nginx writes or opens goes under the temp prefix, so the test runs without root.
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    http = STOCK_HTTP if stock else ""
    return (
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{temp_paths}{http}"
        f"    include {include};\n"
        "}\n"
    )


@pytest.mark.parametrize("stock", [False, True], ids=["bare-http", "stock-http"])
@pytest.mark.parametrize("golden", NGINX_GOLDEN, ids=lambda p: p.name)
def test_nginx_accepts_golden_config(tmp_path, golden, stock, ca):
    nginx = binary("nginx")
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, with_certificates(golden, tmp_path, ca), stock))
    result = subprocess.run([nginx, "-t", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    if "\n    http2 on;\n" in golden.read_text() and nginx_version(nginx) < (1, 25, 1):
        # `http2 on` is nginx 1.25.1's syntax, rendered only for a proxy that reports 1.25.1 or later; an
        # older binary here can only show that it needs the other syntax (tls.nginx.conf, validated).
        assert result.returncode != 0 and 'unknown directive "http2"' in output, output
        return
    assert result.returncode == 0, f"nginx -t rejected {golden.name}:\n{output}"
    # nginx -t passes with warnings such as "conflicting server name"; those are routing bugs here.
    assert "[warn]" not in output, f"nginx -t warned about {golden.name}:\n{output}"


def stream_module(nginx: str) -> str:
    """The line that gives nginx its stream module: none when built in, else `load_module` of the dynamic one
    (Debian's nginx: libnginx-mod-stream, which CI installs)."""
    output = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30).stderr
    if "--with-stream " in output + " ":
        return ""
    modules = re.search(r"--modules-path=(\S+)", output)
    path = Path(modules.group(1) if modules else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    if not path.exists():
        pytest.fail(f"nginx has no stream module ({path} is missing): install libnginx-mod-stream", pytrace=False)
    return f"load_module {path};\n"


@pytest.mark.parametrize("golden", MAIN_GOLDEN, ids=lambda p: p.name)
def test_nginx_accepts_golden_main_context_file(tmp_path, golden):
    """A main-context golden (`NAME.nginx-main.conf`, stream {} of TCP services) included at the top level,
    as nginx.conf includes it, after the stream module is loaded; with its http file (`NAME.nginx.conf`)."""
    nginx = binary("nginx")
    http = golden.with_name(golden.name.replace(".nginx-main.conf", ".nginx.conf"))
    main = tmp_path / "nginx.conf"
    main.write_text(stream_module(nginx) + f"include {golden.resolve()};\n"
                    + nginx_main_config(tmp_path, http.resolve(), stock=True))
    result = subprocess.run([nginx, "-t", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nginx -t rejected {golden.name}:\n{output}"
    assert "[warn]" not in output, f"nginx -t warned about {golden.name}:\n{output}"


@pytest.mark.parametrize("golden", HAPROXY_GOLDEN, ids=lambda p: p.name)
def test_haproxy_accepts_golden_config(golden, tmp_path, ca):
    haproxy = binary("haproxy")
    path = with_certificates(golden, tmp_path, ca)
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"haproxy -c rejected {golden.name}:\n{output}"
    # Warnings today are errors or removed keywords in a later HAProxy release.
    assert "[WARNING]" not in output and "[ALERT]" not in output, f"haproxy -c warned about {golden.name}:\n{output}"


def nginx_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of `text` included in a stock http {}."""
    included = tmp_path / "lbgen.conf"
    included.write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, included, stock=True))
    return subprocess.run([binary("nginx"), "-t", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path),
                           "-c", str(main)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("hosts, size", HOST_LENGTH_CASES, ids=HOST_LENGTH_IDS)
def test_nginx_accepts_long_host_names_with_the_smallest_bucket_size_that_holds_them(tmp_path, hosts, size):
    """The rendered config passes `nginx -t`; half the bucket size lbgen chose would not."""
    text = render_hosts("nginx", hosts).text
    result = nginx_check(tmp_path, text)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "[warn]" not in output, output
    if size is not None:
        smaller = text.replace(f"server_names_hash_bucket_size {size};", f"server_names_hash_bucket_size {size // 2};")
        result = nginx_check(tmp_path, smaller)
        assert result.returncode != 0 and "could not build server_names_hash" in result.stderr, result.stderr


@pytest.mark.parametrize("hosts, bucket, max_size", MANY_HOSTS_CASES, ids=MANY_HOSTS_IDS)
def test_nginx_hashes_many_host_names_without_a_warning(tmp_path, hosts, bucket, max_size):
    """The rendered config passes `nginx -t` without "could not build optimal server_names_hash" (a warning at
    every reload); from 300 names on, nginx's defaults in its place give exactly that warning."""
    text = render_hosts("nginx", hosts).text
    result = nginx_check(tmp_path, text)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "[warn]" not in output, output
    if len(hosts) >= 300:
        defaults = "\n".join(line for line in text.splitlines() if not line.startswith("server_names_hash_"))
        result = nginx_check(tmp_path, defaults)
        assert "could not build optimal server_names_hash" in result.stderr, result.stderr
