"""Every golden config (tests/golden/) checked by the real nginx and HAProxy binaries on this machine.

nginx: the golden file is included inside http {} of a temporary main config, as conf.d/lbgen.conf is
by the stock nginx.conf, and tested with `nginx -t`; once with a bare http {} and once with the
http-level directives the official and Debian nginx.conf set, to catch a duplicate of one of them.
HAProxy: `haproxy -c -f FILE` (it binds nothing, the stats socket included).

A missing binary fails the test rather than skipping it: CI installs both.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
NGINX_GOLDEN = sorted(GOLDEN.glob("*.nginx.conf"))
HAPROXY_GOLDEN = sorted(GOLDEN.glob("*.haproxy.cfg"))

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


def test_golden_files_exist():
    assert NGINX_GOLDEN and HAPROXY_GOLDEN, f"no golden configs in {GOLDEN}"


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
def test_nginx_accepts_golden_config(tmp_path, golden, stock):
    nginx = binary("nginx")
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, golden.resolve(), stock))
    result = subprocess.run([nginx, "-t", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nginx -t rejected {golden.name}:\n{output}"
    # nginx -t passes with warnings such as "conflicting server name"; those are routing bugs here.
    assert "[warn]" not in output, f"nginx -t warned about {golden.name}:\n{output}"


@pytest.mark.parametrize("golden", HAPROXY_GOLDEN, ids=lambda p: p.name)
def test_haproxy_accepts_golden_config(golden):
    haproxy = binary("haproxy")
    result = subprocess.run([haproxy, "-c", "-f", str(golden)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"haproxy -c rejected {golden.name}:\n{output}"
    # Warnings today are errors or removed keywords in a later HAProxy release.
    assert "[WARNING]" not in output and "[ALERT]" not in output, f"haproxy -c warned about {golden.name}:\n{output}"
