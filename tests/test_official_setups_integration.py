"""lbgen against the replicas of the official nginx and haproxy images (Debian and Alpine/BusyBox variants),
unchanged, with the config path in the container, on a single-file bind mount, a bind-mounted directory, a
named volume, and a read-only mount; and `lbgen doctor`'s verdict on each broken set-up."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from lbgen.errors import ConfigReadOnly
from lbgen.health import http_get
from lbgen.render import parse_meta
from scenario import Scenario

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parent / "images"
DIRS = {"nginx": "/etc/nginx/conf.d", "haproxy": "/usr/local/etc/haproxy"}
FILES = {"nginx": "lbgen.conf", "haproxy": "haproxy.cfg"}


def official(lab, kind, variant="debian", binds=()):
    def make(net):
        if kind == "nginx":
            return lab.official_nginx(net, variant=variant, binds=list(binds))
        return lab.official_haproxy(net, variant=variant, binds=list(binds))
    return make


def mount_spec(lab, tmp_path, kind, how, ro=False):
    """(the -v spec, the host file that should hold the live config, or None for a volume)."""
    suffix = ":ro" if ro else ""
    directory, name = DIRS[kind], FILES[kind]
    host = tmp_path / "proxy-config"
    host.mkdir()
    if how == "file":
        target = host / name
        if kind == "haproxy":
            shutil.copy(IMAGES / "haproxy.cfg", target)
        else:
            target.write_text("# lbgen writes here\n")
        target.chmod(0o644)
        return f"{target}:{directory}/{name}{suffix}", target
    if how == "dir":
        if kind == "haproxy":
            shutil.copy(IMAGES / "haproxy.cfg", host / name)
        host.chmod(0o755)
        return f"{host}:{directory}{suffix}", host / name
    volume = lab.volume("proxyconf")
    return f"{volume}:{directory}{suffix}", None


def served_generation(s):
    code, body = s.lab.http_get(f"http://{s.proxy_ip}:9180/lbgen/status")
    return body.split("generation=", 1)[1].split()[0] if code == 200 else None


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
@pytest.mark.parametrize("how", ["container", "file", "dir", "volume", "alpine"])
def test_lbgen_drives_the_official_image_unchanged(lab, tmp_path, kind, how):
    binds, host_file = (), None
    variant = "alpine" if how == "alpine" else "debian"
    if how in ("file", "dir", "volume"):
        spec, host_file = mount_spec(lab, tmp_path, kind, how)
        binds = (spec,)
    s = Scenario(lab, tmp_path, kind, green=1, proxy=official(lab, kind, variant, binds))
    first = s.app().apply()
    assert first.changed
    # Right after the first reload an old worker (stock config) may still accept a connection on :80 for a
    # few milliseconds (lbgen verifies on its status port, which the stock config never had).
    s.lab.wait_for(lambda: _body(s).startswith("env="), timeout=5, what="the old workers to stop accepting")
    assert s.envs_served() == {"blue"}
    # lbgen's default server on port 80 wins over the image's stock site for any Host but `localhost`
    # (the stock default.conf's server_name: see the README).
    for host in (s.proxy_ip, "example.com"):
        code, body = http_get(s.url, 5.0, {"Host": host})
        assert code == 200 and body.startswith("env=blue"), (host, body[:80])
    # The file stays readable by the proxy's own user (HAProxy's master re-reads it as uid 99).
    mode_owner = s.proxy.exec_run(["stat", "-L", "-c", "%a", f"{DIRS[kind]}/{FILES[kind]}"]).output.decode().strip()
    assert int(mode_owner, 8) & 0o004, mode_owner
    # A switch (reload as the image's user, files written as root) and a second apply.
    assert s.app().switch("green", timeout=20).outcome == "switched"
    live = s.live()
    generation = parse_meta(live.decode()).generation
    assert s.envs_served() == {"green"}
    if host_file is not None:
        assert host_file.read_bytes() == live, "the host's file must hold the live config"
    # A restart of the proxy serves the same config.
    s.proxy.restart(timeout=10)
    s.lab.wait_for(lambda: _answers(s) == generation, timeout=15, what="the restarted proxy to serve lbgen's config")
    assert s.envs_served() == {"green"}
    assert not s.app().apply().changed


def _body(s):
    try:
        return http_get(s.url, 2.0)[1]
    except (ConnectionError, TimeoutError):
        return ""


def _answers(s):
    try:
        return served_generation(s)
    except (ConnectionError, TimeoutError):
        return None


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
@pytest.mark.parametrize("how", ["file", "dir"])
def test_a_read_only_mount_is_refused_before_anything_changes(lab, tmp_path, kind, how):
    spec, host_file = mount_spec(lab, tmp_path, kind, how, ro=True)
    before = host_file.read_bytes() if host_file.exists() else None
    s = Scenario(lab, tmp_path, kind, green=0, proxy=official(lab, kind, binds=(spec,)))
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "apply"])
    assert result.exit_code == 3, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and len(message.splitlines()) == 1
    assert "read-only" in message and spec.rsplit(":", 1)[0].split(":", 1)[0] in message
    assert "drop `:ro`" in message and "nothing was changed" in message
    assert (host_file.read_bytes() if host_file.exists() else None) == before
    with pytest.raises(ConfigReadOnly):
        s.app().apply()
    doctor = CliRunner().invoke(cli, ["-c", str(s.config_path), "doctor"])
    assert doctor.exit_code == 2, doctor.output
    line = next(l for l in doctor.output.splitlines() if l.startswith("CRITICAL") and "config-path" in l)
    assert "read-only" in line and "Fix: Mount it read-write" in line


def doctor(s, *args):
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "doctor", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_doctor_passes_a_good_plain_set_up(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, green=1, proxy=official(lab, kind))
    code, out = doctor(s)
    assert code == 0, out
    assert out.splitlines()[0].startswith("LBGEN DOCTOR OK - ")
    names = [line.split(":", 1)[0].split()[-1] for line in out.splitlines()[1:]]
    assert names[:3] == ["docker", "proxy", "reload"] and "config-path" in names and "web" in names
    s.app().apply()
    code, out = doctor(s, "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "OK"
    status = next(c for c in report["checks"] if c["name"] == "status-listener")
    assert "generation" in status["message"]
    user = next(c for c in report["checks"] if c["name"] == "exec-user")
    assert user["message"].startswith("the container runs as " + ("haproxy" if kind == "haproxy" else "root"))


def test_doctor_names_the_network_a_proxy_is_not_on(lab, tmp_path):
    other, _ = lab.network("elsewhere")
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=0, proxy=lambda net: lab.official_nginx(other))
    code, out = doctor(s)
    assert code == 2, out
    line = next(l for l in out.splitlines() if " network: " in l)
    assert line.startswith("CRITICAL") and s.net in line
    assert f"Fix: docker network connect {s.net} {s.proxy.name}" in line


def test_doctor_refuses_haproxy_outside_master_worker_mode(lab, tmp_path):
    def plain_haproxy(net):
        # The placeholder config without its `master-worker` line, started without -W.
        script = ("grep -v master-worker /usr/local/etc/haproxy/haproxy.cfg > /tmp/plain.cfg && "
                  "exec haproxy -db -f /tmp/plain.cfg")
        return lab.container(net, "plain-haproxy", command=["sh", "-c", script])
    s = Scenario(lab, tmp_path, "haproxy", blue=1, green=0, proxy=plain_haproxy)
    code, out = doctor(s)
    assert code == 2, out
    line = next(l for l in out.splitlines() if " reload: " in l)
    assert line.startswith("CRITICAL") and "master-worker" in line and "Fix: run HAProxy with -W" in line


def test_doctor_says_when_the_status_listener_cannot_be_reached(lab, tmp_path):
    s = Scenario(lab, tmp_path, "haproxy", blue=1, green=0, proxy=official(lab, "haproxy"))
    s.app().apply()
    s.write_config(proxy_yaml="status_port: 9181\n")  # changed in lbgen.yaml, not applied yet
    code, out = doctor(s)
    assert code == 2, out
    line = next(l for l in out.splitlines() if "status-listener" in l)
    assert line.startswith("CRITICAL") and f"{s.proxy_ip}:9181" in line and "run lbgen apply" in line


def test_doctor_is_unknown_for_a_bad_lbgen_yaml(tmp_path):
    bad = tmp_path / "lbgen.yaml"
    bad.write_text("network: [\n")
    result = CliRunner().invoke(cli, ["-c", str(bad), "doctor"])
    assert result.exit_code == 3 and result.output.startswith("LBGEN DOCTOR UNKNOWN - ")
