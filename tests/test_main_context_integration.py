"""nginx's main context on the official nginx replica: with lbgen's main-context file included from nginx.conf
(a mounted nginx.conf, as the README shows), proxy.drain_timeout cuts an old worker's WebSocket as on
HAProxy; without the include, apply and doctor say so; and doctor's verdict on the image's stock
conf.d/default.conf, which really answers Host: localhost on port 80."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from scenario import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parent / "images" / "ws"))
from wsapp import Closed, WebSocket  # noqa: E402

pytestmark = pytest.mark.integration

OFFICIAL_NGINX_CONF = Path(__file__).resolve().parent / "images" / "official" / "nginx" / "nginx.conf"
INCLUDE = "include /etc/nginx/lbgen-main*.conf;"
HEALTH = "health: {path: /health, interval: 200ms, timeout: 1s, rise: 2, fall: 2}"


def with_include(tmp_path: Path) -> str:
    """The official image's nginx.conf with lbgen's include line on top, as a -v spec mounting it."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"{INCLUDE}\n{OFFICIAL_NGINX_CONF.read_text()}")
    conf.chmod(0o644)
    return f"{conf}:/etc/nginx/nginx.conf:ro"


def scenario(lab, tmp_path, binds=(), drain="3s", green=1):
    image = lab.derived_image("ws")
    return Scenario(lab, tmp_path, "nginx", blue=1, green=green, backend_kw={"image": image},
                    proxy_yaml=f"drain_timeout: {drain}\n" if drain else "",
                    service_yaml=f"default_env: blue\n{HEALTH}\n",
                    proxy=lambda net: lab.official_nginx(net, binds=list(binds)))


def main_warnings(s) -> list[str]:
    return [e.fields["message"] for e in s.logs if e.name == "warning" and "lbgen-main" in e.fields["message"]]


def doctor(s):
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "doctor"])
    return result.exit_code, result.output


def line_of(out: str, name: str) -> str | None:
    return next((l for l in out.splitlines() if f" {name}: " in l), None)


def closed_within(ws: WebSocket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except Closed:
            return True
        except socket.timeout:
            return False
    return False


def get_with_host(address: str, host: str) -> str:
    """A raw GET / naming `host`: the whole response."""
    with socket.create_connection((address, 80), timeout=5) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            data = conn.recv(65536)
            if not data:
                return b"".join(chunks).decode("utf-8", errors="replace")
            chunks.append(data)


def test_with_the_include_drain_timeout_cuts_an_old_websocket_on_nginx_too(lab, tmp_path):
    s = scenario(lab, tmp_path, binds=[with_include(tmp_path)])
    s.app().apply()
    main = s.proxy.exec_run(["cat", "/etc/nginx/lbgen-main.conf"]).output.decode()
    assert "worker_shutdown_timeout 3000ms;" in main
    # The first apply adds the status listener lbgen verifies with, so an old worker (the stock site on :80)
    # may still take a connection or two on :80 just after it: wait until :80 is lbgen's.
    lab.wait_for(lambda: "env=blue" in get_with_host(s.proxy_ip, s.proxy_ip), timeout=10, what="lbgen on :80")
    old = WebSocket(s.proxy_ip, 80)
    assert old.echo("one").startswith("env=blue")

    s.app().switch("green")
    assert s.envs_served(2) == {"green"}
    assert old.echo("two").startswith("env=blue")  # the reload did not cut it: the old worker holds it
    # ...until worker_shutdown_timeout (proxy.drain_timeout) after the reload, when the old worker exits.
    assert closed_within(old, 3 + 10), "the old nginx worker kept the WebSocket past drain_timeout"
    new = WebSocket(s.proxy_ip, 80)
    assert new.echo("three").startswith("env=green")
    new.close()
    assert main_warnings(s) == []
    code, out = doctor(s)
    assert line_of(out, "main-context").startswith("OK ") and "includes /etc/nginx/lbgen-main.conf" in out


def test_without_the_include_apply_and_doctor_say_what_to_add(lab, tmp_path):
    s = scenario(lab, tmp_path)
    code, out = doctor(s)
    line = line_of(out, "main-context")
    assert line is not None and line.startswith("WARNING ") and code >= 1, out
    assert "nginx.conf does not include it" in line and f"Fix: add `{INCLUDE}` at the top level" in line
    s.app().apply()
    [warning] = main_warnings(s)
    assert "needs nginx to read /etc/nginx/lbgen-main.conf" in warning and INCLUDE in warning

    s.write_config(service_yaml=f"default_env: blue\n{HEALTH}\n")  # no drain_timeout: nothing needs it
    s.logs.clear()
    s.app().apply()
    assert main_warnings(s) == []
    assert line_of(doctor(s)[1], "main-context") is None


def test_doctor_warns_about_the_stock_default_site_which_answers_host_localhost(lab, tmp_path):
    s = scenario(lab, tmp_path, drain=None, green=0)
    s.app().apply()
    assert "Welcome to nginx!" in get_with_host(s.proxy_ip, "localhost")  # what the warning is about
    code, out = doctor(s)
    line = line_of(out, "stock-site")
    assert code == 1 and line is not None and line.startswith("WARNING "), out
    assert "/etc/nginx/conf.d/default.conf" in line and "port 80 (service web)" in line
    assert "Fix: remove it where the image is built (RUN rm /etc/nginx/conf.d/default.conf" in line

    # The fix, applied: the stock site is gone, Host: localhost reaches the service, doctor is quiet.
    assert s.proxy.exec_run(["rm", "/etc/nginx/conf.d/default.conf"]).exit_code == 0
    assert s.proxy.exec_run(["nginx", "-s", "reload"]).exit_code == 0
    # (old workers answer until they have handed over: wait for the service itself)
    lab.wait_for(lambda: "env=blue" in get_with_host(s.proxy_ip, "localhost"), timeout=10,
                 what="nginx to drop the stock site and answer Host: localhost from the service")
    code, out = doctor(s)
    assert line_of(out, "stock-site") is None and code == 0, out
