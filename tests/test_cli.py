"""The CLI contract: help with an example on every command, one-line errors, documented exit codes."""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from lbgen import __version__
from lbgen.cli import cli

COMMANDS = sorted(cli.commands)


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert cli.commands[command].help


def test_group_help_lists_exit_codes():
    result = run("--help")
    assert result.exit_code == 0
    for line in ("0  ok", "3  invalid configuration", "4  Docker unreachable", "5  health gate refused a switch",
                 "6  reload or verification failed", "7  another lbgen holds the lock"):
        assert line in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output == f"lbgen, version {__version__}\n"


def test_missing_config_is_exit_3_with_one_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = run("--config", str(missing), "discover")
    assert result.exit_code == 3
    assert result.output == f"Error: {missing}: no such file (give --config PATH or set LBGEN_CONFIG)\n"


def test_config_from_environment(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("network: x\nproxy: {kind: nginx, container: e}\nservices: {web: {lsten: 1}}\n")
    result = run("discover", env={"LBGEN_CONFIG": str(path)})
    assert result.exit_code == 3
    assert result.output == f"Error: {path}:3: services.web.lsten: unknown key (expected one of: listen, mode, hosts, " \
                            "algorithm, hash_key, default_env, health, connect_timeout, read_timeout, " \
                            "websocket_timeout, retries, tls, paths, strip_prefix, nginx_snippet, haproxy_snippet)\n"


def test_usage_errors_are_exit_2():
    assert run("switch").exit_code == 2  # --env is required
    assert run("switch", "--env", "green", "--timeout", "soon").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_python_dash_m_and_no_traceback(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("network: [\n")
    proc = subprocess.run([sys.executable, "-m", "lbgen", "-c", str(path), "render"], capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: {path}:") and "invalid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
