"""`lbgen apply` against real nginx and HAProxy containers: discover, render, install, validate, reload,
verify; byte-identical configs are left alone; an invalid config never goes live; reloads drop nothing."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from lbgen.errors import ProxyError, ProxyRejectedConfig, ReloadFailed
from lbgen.render import parse_meta
from scenario import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loadgen import Load  # noqa: E402

KINDS = ["nginx", "haproxy"]


@pytest.mark.parametrize("kind", KINDS)
def test_apply_routes_the_active_env_and_a_second_apply_changes_nothing(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    result = s.app().apply()
    assert result.changed
    live = s.live().decode()
    assert parse_meta(live).generation == result.generation
    assert parse_meta(live).active == {"web": "blue"}
    for backend in s.backends["blue"]:
        assert lab.ip(backend, s.net) in live
    for backend in s.backends["green"]:
        assert lab.ip(backend, s.net) not in live
    assert s.envs_served() == {"blue"}

    inode = s.inode()
    again = s.app().apply()
    assert not again.changed and again.generation == result.generation
    assert s.inode() == inode, "a no-op apply must not rewrite the file"


@pytest.mark.parametrize("kind", KINDS)
def test_apply_follows_new_and_removed_backends(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, green=0)
    s.app().apply()
    extra = s.add_backend("blue")
    assert s.app().apply().changed
    address = lab.ip(extra, s.net)
    assert f"{address}:8080".encode() in s.live()
    extra.remove(force=True)
    assert s.app().apply().changed
    assert f"{address}:8080".encode() not in s.live()
    assert s.envs_served() == {"blue"}


@pytest.mark.parametrize("kind", KINDS)
def test_an_invalid_config_never_goes_live(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    s.app().apply()
    before = s.live()
    templates = tmp_path / "templates"
    templates.mkdir()
    name = "nginx.conf.j2" if kind == "nginx" else "haproxy.cfg.j2"
    builtin = (Path(__file__).resolve().parents[1] / "templates" / name).read_text()
    (templates / name).write_text(builtin + "\nthis_is_not_a_directive on;\n")
    s.write_config(top_yaml=f"templates_dir: {templates}\n")
    load = Load(s.url, workers=2, max_seconds=30).start()
    try:
        with pytest.raises(ProxyRejectedConfig, match="rejected the rendered config.*previous config is still live"):
            s.app().apply()
        time.sleep(0.3)
    finally:
        load.stop()
    assert s.live() == before
    assert load.sent > 0 and load.failed == 0, load.summary()
    assert s.envs_served() == {"blue"}
    # Nothing half-installed is left beside the live file.
    listing = s.proxy.exec_run(["ls", "-a", str(Path(s.config_file).parent)]).output.decode()
    assert ".lbgen-new" not in listing and ".lbgen-prev" not in listing


@pytest.mark.parametrize("kind", KINDS)
def test_reload_under_keepalive_load_fails_no_request(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind, blue=2, green=0)
    s.app().apply()
    load = Load(s.url, workers=4, max_seconds=60).start()
    try:
        for i in range(4):
            s.add_backend("blue")
            assert s.app().apply().changed
            time.sleep(0.3)
    finally:
        load.stop()
    assert load.sent > 200, load.summary()
    assert load.failed == 0, load.summary()


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_prints_a_diff_and_changes_nothing(lab, tmp_path, kind):
    s = Scenario(lab, tmp_path, kind)
    before = s.live()
    result = CliRunner().invoke(cli, ["-c", str(s.config_path), "apply", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("--- live\n+++ rendered\n")
    assert "+# lbgen-meta:" in result.stdout
    assert s.live() == before


def test_a_failed_verification_restores_the_previous_config(lab, tmp_path):
    """The proxy reloads but its status listener never shows the new generation (simulated by an HTTP
    client that cannot see it): the previous config is put back and served."""
    s = Scenario(lab, tmp_path, "nginx")
    first = s.app().apply()
    before = s.live()
    s.add_backend("blue")

    def blind_get(url, timeout):
        return 200, f"lbgen generation={first.generation} web=blue"

    app = s.app(get=blind_get)
    app.core.proxy.verify_timeout = 1.0
    with pytest.raises(ReloadFailed, match="did not serve generation .* the previous config was restored"):
        app.apply()
    assert s.live() == before
    proxy = s.app().core.proxy
    lab.wait_for(lambda: proxy.served().generation == first.generation, timeout=5,
                 what="the proxy to serve the restored generation")


def test_haproxy_outside_master_worker_mode_is_refused_not_restarted(lab, tmp_path):
    s = Scenario(lab, tmp_path, "haproxy")
    plain = lab.container(s.net, command=["haproxy", "-db", "-f", "/tmp/h.cfg"], start=False)
    plain.put_archive("/tmp", _tar("h.cfg", b"defaults\n  mode http\n  timeout client 1s\n  timeout server 1s\n"
                                   b"  timeout connect 1s\nfrontend f\n  bind :80\n"))
    plain.start()
    s.proxy = plain
    s.write_config()
    with pytest.raises(ProxyError, match="not running in master-worker mode.*nothing was changed"):
        s.app().apply()
    plain.reload()
    assert plain.status == "running"


def test_cli_apply_and_exit_codes(lab, tmp_path):
    s = Scenario(lab, tmp_path, "nginx", green=0)
    runner = CliRunner()
    first = runner.invoke(cli, ["-c", str(s.config_path), "apply"])
    assert first.exit_code == 0 and first.stdout.startswith("applied generation=")
    second = runner.invoke(cli, ["-c", str(s.config_path), "apply"])
    assert second.exit_code == 0 and second.stdout.startswith("unchanged generation=")
    unreachable = runner.invoke(cli, ["-c", str(s.config_path), "apply"], env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert unreachable.exit_code == 4
    assert unreachable.output.startswith("Error: cannot reach the Docker daemon") and unreachable.output.count("\n") == 1
    s.proxy.stop(timeout=1)
    stopped = runner.invoke(cli, ["-c", str(s.config_path), "apply"])
    assert stopped.exit_code == 4 and "is not running" in stopped.output


def _tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
