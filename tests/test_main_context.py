"""nginx's main-context file (proxy.main_config_path): rendered with the http include as one generation,
installed and restored with it, asked for only when lbgen.yaml needs it; `lbgen doctor` on it, on the
image's stock default.conf, and in engine-check mode. Fast: FakeProxy, whose install scripts run for real."""
from __future__ import annotations

from typing import Any

import pytest

from fakeproxy import CONFIG, FakeProxy
from fakes import FakeEngine
from lbgen.app import Lbgen
from lbgen.config import parse_config
from lbgen.doctor import diagnose
from lbgen.engine import ExecResult
from lbgen.errors import ConfigError, ProxyRejectedConfig, ReloadFailed
from lbgen.model import OK, WARNING
from lbgen.probe import PROBE
from lbgen.proxies.base import ConfigDump
from lbgen.render import parse_meta, render

MAIN = "/etc/nginx/lbgen-main.conf"
STOCK_DEFAULT = """\
server {
    listen       80;
    listen  [::]:80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}"""


def nginx_conf(include: str = "") -> str:
    return f"user  nginx;\n{include}\nevents {{}}\nhttp {{\n    include /etc/nginx/conf.d/*.conf;\n}}"


def dump(files: dict[str, str]) -> str:
    return "".join(f"# configuration file {path}:\n{text}\n\n" for path, text in files.items())


def fake(proxy_yaml: str = "", top_yaml: str = "", listen: int = 80) -> FakeProxy:
    text = CONFIG.format(kind="nginx").replace("proxy: {kind: nginx, container: proxy}",
                                               "proxy: {kind: nginx, container: proxy" + proxy_yaml + "}")
    text = top_yaml + text.replace("    default_env: blue\n", f"    default_env: blue\n    listen: {listen}\n")
    fp = FakeProxy("nginx", text)
    fp.backend("web-blue-1", "blue")
    fp.nginx_files = {"/etc/nginx/nginx.conf": nginx_conf()}  # type: ignore[attr-defined]
    fp.dumps = 0  # type: ignore[attr-defined]
    real_sh = fp.engine.exec_handlers["sh"]

    def nginx(engine: FakeEngine, container: Any, argv: list[str]) -> ExecResult:
        if argv[1] == "-v":
            return ExecResult(0, "nginx version: nginx/1.27.0\n")
        assert argv[1:] == ["-T", "-q"], argv
        fp.dumps += 1  # type: ignore[attr-defined]
        files = dict(fp.nginx_files)  # type: ignore[attr-defined]
        include = any(MAIN.replace(".conf", "*.conf") in t or MAIN in t for t in files.values())
        if include and fp.engine.read("proxy", MAIN) is not None:
            files[MAIN] = fp.engine.read("proxy", MAIN).decode()
        return ExecResult(0, dump(files))

    def sh(engine: FakeEngine, container: Any, argv: list[str]) -> ExecResult:
        if argv[2] is PROBE:  # engine-mode checks: answered as the proxy container would
            fp.probed += 1  # type: ignore[attr-defined]
            targets = argv[8 + int(argv[7]):]
            lines = []
            for i in range(0, len(targets), 3):
                try:
                    status, body = fp.get(f"http://{targets[i]}:{targets[i + 1]}{targets[i + 2]}", 1.0)
                    lines.append(f"{i // 3} {status}" + (f"\nHTTP/1.1 {status} OK\n\n{body}" if argv[6] == "1" else ""))
                except (ConnectionError, TimeoutError) as e:
                    lines.append(f"{i // 3} ERR {e}")
            return ExecResult(0, "\n".join(lines) + "\n")
        if "lbgen-probe" in argv[2]:  # doctor's writability probe
            return ExecResult(0, "")
        return real_sh(engine, container, argv)

    fp.probed = 0  # type: ignore[attr-defined]
    fp.engine.exec_handlers["nginx"] = nginx
    fp.engine.exec_handlers["sh"] = sh
    fp.engine.exec_handlers["id"] = lambda e, c, argv: ExecResult(0, "0\n")
    return fp


def app(fp: FakeProxy, **kw: Any) -> tuple[Lbgen, list]:
    logs: list = []
    kw.setdefault("get", fp.get)
    return Lbgen(fp.config, fp.engine, sleep=lambda s: None, log=logs.append, **kw), logs


def warnings(logs: list) -> list[str]:
    return [e.fields["message"] for e in logs if e.name == "warning"]


def by_name(report: Any, name: str) -> list:
    return [c for c in report.checks if c.name == name]


# --- rendering -----------------------------------------------------------------------------------------

def test_the_main_file_holds_the_drain_timeout_and_shares_the_generation():
    config = parse_config(CONFIG.format(kind="nginx").replace("container: proxy}", "container: proxy, "
                                                                                   "drain_timeout: 7s}"))
    one = render(config, [], certs={})
    assert one.main is not None and "\nworker_shutdown_timeout 7000ms;\n" in one.main
    assert one.main.startswith(f"# lbgen-main: generation {one.generation}\n")
    assert "stream {" not in one.main  # the hook for TCP services stays empty
    other = render(parse_config(CONFIG.format(kind="nginx")), [], certs={})
    # Only the main file differs, yet the generation (and so the http file's status answer) changes.
    assert "worker_shutdown_timeout 300000ms;" in other.main
    assert other.generation != one.generation
    assert other.text.replace(other.generation, "G") == one.text.replace(one.generation, "G")
    assert render(parse_config(CONFIG.format(kind="haproxy")), [], certs={}).main is None


def test_main_config_path_is_checked():
    nginx = CONFIG.format(kind="nginx")
    assert parse_config(nginx).proxy.main_config_path == MAIN
    assert not parse_config(nginx).proxy.drain_timeout_set
    assert parse_config(nginx.replace("container: proxy}", "container: proxy, main_config_path: /etc/nginx/x.conf}")
                        ).proxy.main_config_path == "/etc/nginx/x.conf"
    with pytest.raises(ConfigError, match="outside it"):
        parse_config(nginx.replace("container: proxy}", "container: proxy, main_config_path: /etc/nginx/conf.d/m.conf}"))
    with pytest.raises(ConfigError, match="haproxy has no main-context include"):
        parse_config(CONFIG.format(kind="haproxy").replace("container: proxy}",
                                                           "container: proxy, main_config_path: /x/m.cfg}"))


@pytest.mark.parametrize("line, included", [
    ("include /etc/nginx/lbgen-main.conf;", True),
    ("include /etc/nginx/lbgen-main*.conf;", True),
    ("include lbgen-main.conf;", True),  # relative to nginx.conf's directory
    ("# include /etc/nginx/lbgen-main.conf;", False),
    ("include /etc/nginx/modules-enabled/*.conf;", False),
    ("", False),
])
def test_the_include_is_found_in_nginx_t_output(line, included):
    parsed = ConfigDump.parse(dump({"/etc/nginx/nginx.conf": nginx_conf(line)}))
    assert parsed.includes(MAIN) is included
    assert ConfigDump.parse(dump({"/etc/nginx/nginx.conf": nginx_conf(), MAIN: ""})).includes(MAIN)


# --- apply -------------------------------------------------------------------------------------------

def test_apply_installs_both_files_and_warns_when_drain_timeout_needs_an_include_nginx_lacks():
    fp = fake(", drain_timeout: 5s")
    lbgen, logs = app(fp)
    result = lbgen.apply()
    main = fp.engine.read("proxy", MAIN).decode()
    assert f"generation {result.generation}" in main and "worker_shutdown_timeout 5000ms;" in main
    assert fp.serving == result.generation
    [message] = warnings(logs)
    assert message.startswith("proxy.drain_timeout (5s: nginx worker_shutdown_timeout) needs nginx to read "
                              f"{MAIN}, and its nginx.conf does not include it")
    assert "`include /etc/nginx/lbgen-main*.conf;` at the top level of nginx.conf" in message

    fp.nginx_files["/etc/nginx/nginx.conf"] = nginx_conf("include /etc/nginx/lbgen-main*.conf;")
    lbgen, logs = app(fp)
    assert not lbgen.apply().changed and warnings(logs) == []


def test_nothing_is_asked_of_nginx_when_nothing_needs_the_main_file():
    fp = fake()
    lbgen, logs = app(fp)
    lbgen.apply()
    assert warnings(logs) == [] and fp.dumps == 0
    assert "worker_shutdown_timeout 300000ms;" in fp.engine.read("proxy", MAIN).decode()


def test_a_main_file_nginx_refuses_restores_both_files():
    fp = fake(", drain_timeout: 5s")
    lbgen, _ = app(fp)
    first = lbgen.apply()
    before = (fp.live(), fp.engine.read("proxy", MAIN))
    fp.validate = lambda data: (False, "nginx: [emerg] unknown directive")
    fp.config = parse_config(_with_drain(fp, "9s"))
    lbgen, _ = app(fp)
    with pytest.raises(ProxyRejectedConfig, match="rejected the rendered config"):
        lbgen.apply()
    assert (fp.live(), fp.engine.read("proxy", MAIN)) == before and fp.serving == first.generation


def test_a_failed_reload_puts_the_previous_main_file_back():
    fp = fake(", drain_timeout: 5s")
    lbgen, _ = app(fp)
    first = lbgen.apply()
    before = fp.engine.read("proxy", MAIN)
    fp.reload_takes_effect = False
    fp.config = parse_config(_with_drain(fp, "9s"))
    lbgen, _ = app(fp)
    lbgen.core.proxy.verify_timeout = 0.05
    with pytest.raises(ReloadFailed, match="previous config was restored"):
        lbgen.apply()
    assert fp.engine.read("proxy", MAIN) == before
    assert parse_meta(fp.live().decode()).generation == first.generation


def _with_drain(fp: FakeProxy, value: str) -> str:
    return CONFIG.format(kind="nginx").replace("container: proxy}", f"container: proxy, drain_timeout: {value}}}"
                                               ).replace("    default_env: blue\n", "    default_env: blue\n    listen: 80\n")


# --- doctor --------------------------------------------------------------------------------------------

def test_doctor_warns_about_the_missing_include_only_when_something_needs_it():
    fp = fake(", drain_timeout: 5s")
    [check] = by_name(diagnose(app(fp)[0].core), "main-context")
    assert check.status == WARNING and "nginx.conf does not include it" in check.message
    assert "add `include /etc/nginx/lbgen-main*.conf;` at the top level of nginx.conf" in check.fix
    assert "RUN sed -i '1i include /etc/nginx/lbgen-main*.conf;' /etc/nginx/nginx.conf" in check.fix

    fp.nginx_files["/etc/nginx/nginx.conf"] = nginx_conf("include /etc/nginx/lbgen-main*.conf;")
    [check] = by_name(diagnose(app(fp)[0].core), "main-context")
    assert check.status == OK and f"includes {MAIN}" in check.message

    assert by_name(diagnose(app(fake())[0].core), "main-context") == []


@pytest.mark.parametrize("listen, edit, warned", [
    (80, lambda t: t, True),
    (8080, lambda t: t, False),  # no lbgen service on the stock site's port
    (80, lambda t: t.replace("localhost", "www.example.com"), False),  # the user's own site
])
def test_doctor_warns_about_the_stock_default_site_on_an_lbgen_port(listen, edit, warned):
    fp = fake(listen=listen)
    fp.nginx_files["/etc/nginx/conf.d/default.conf"] = edit(STOCK_DEFAULT)
    report = diagnose(app(fp)[0].core)
    checks = by_name(report, "stock-site")
    if not warned:
        assert checks == []
        return
    [check] = checks
    assert check.status == WARNING and report.exit_code == 1
    assert "/etc/nginx/conf.d/default.conf" in check.message and "port 80 (service web)" in check.message
    assert check.fix.startswith("remove it where the image is built (RUN rm /etc/nginx/conf.d/default.conf in "
                                "your Dockerfile), or mount your own directory over /etc/nginx/conf.d")


def test_doctor_in_engine_mode_checks_the_listener_and_backends_from_inside_the_proxy():
    fp = fake(top_yaml="checks: engine\n")

    def no_direct(url: str, timeout: float, *a: Any) -> tuple[int, str]:
        raise AssertionError(f"direct HTTP to {url}")

    lbgen, _ = app(fp, get=fp.get)
    lbgen.apply()
    lbgen, _ = app(fp, get=no_direct)
    fp.probed = 0
    report = diagnose(lbgen.core)
    assert report.exit_code == 0, report.text()
    [mode] = by_name(report, "checks")
    assert mode.message == "engine: the status listener and backends are checked from inside proxy through " \
                           "Docker (set)"
    [status] = by_name(report, "status-listener")
    assert "from inside proxy" in status.message and f"generation {fp.serving}" in status.message
    [web] = by_name(report, "service web")
    assert web.message.endswith("all reachable from inside proxy")
    assert fp.probed == 2  # the listener and the backends, each through one exec

    fp.serving = None  # the listener does not answer, even from inside
    [status] = by_name(diagnose(app(fp, get=no_direct)[0].core), "status-listener")
    assert status.status == 2 and "does not answer from inside proxy" in status.message
