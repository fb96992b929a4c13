"""Where templates come from: the built-ins (package data `lbgen.templates`), a user's `templates_dir`
searched first and required to exist, and the example override in examples/templates/ checked by real nginx."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from click.testing import CliRunner
from test_render_validate import nginx_main_config
from testutil import real_binary

from lbgen.cli import cli
from lbgen.templating import _builtin_template

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONFIG = """\
network: app-net
{top}proxy: {{kind: {kind}, container: edge}}
services:
  web: {{listen: 80}}
"""
INVENTORY = "backends:\n  - {service: web, name: web-1, address: 10.0.0.1, port: 8080}\n"


def render(tmp_path: Path, top: str = "", kind: str = "nginx") -> str:
    (tmp_path / "lbgen.yaml").write_text(CONFIG.format(top=top, kind=kind))
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "lbgen.yaml"), "render", "--from-file",
                                      str(tmp_path / "inventory.yaml")])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_built_in_templates_are_package_data():
    source, filename, uptodate = _builtin_template("nginx.conf.j2")
    assert source.startswith("{{ meta_comment }}\n")
    assert Path(filename) == ROOT / "templates" / "nginx.conf.j2"  # the checkout's, in an editable install
    assert _builtin_template("haproxy.cfg.j2") is not None
    assert _builtin_template("no-such.j2") is None
    with pytest.raises(jinja2.TemplateNotFound):
        _builtin_template("../pyproject.toml")


def test_templates_dir_is_searched_first_and_the_built_ins_fill_in(tmp_path):
    templates = tmp_path / "mine"
    templates.mkdir()
    (templates / "nginx.conf.j2").write_text("{{ meta_comment }}\n# mine: {{ services|map(attribute='name')|join(',') }}\n")

    assert render(tmp_path, "templates_dir: mine\n").splitlines()[2] == "# mine: web"
    # No haproxy.cfg.j2 of its own: the built-in one.
    assert "\nbackend lbgen_web\n" in render(tmp_path, "templates_dir: mine\n", kind="haproxy")


@pytest.mark.parametrize("value,problem", [("missing", "no such directory"), ("lbgen.yaml", "not a directory")])
def test_a_templates_dir_that_is_not_a_directory_is_a_config_error(tmp_path, value, problem):
    (tmp_path / "lbgen.yaml").write_text(CONFIG.format(top=f"templates_dir: {value}\n", kind="nginx"))
    (tmp_path / "inventory.yaml").write_text(INVENTORY)

    result = subprocess.run([sys.executable, "-m", "lbgen", "-c", str(tmp_path / "lbgen.yaml"), "render",
                             "--from-file", str(tmp_path / "inventory.yaml")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)

    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"Error: {tmp_path / 'lbgen.yaml'}:2: templates_dir: {problem}: {tmp_path / value}\n"


@pytest.mark.parametrize("stock", [False, True], ids=["bare-http", "stock-http"])
def test_the_example_template_is_used_and_nginx_accepts_its_output(tmp_path, stock):
    # examples/lbgen.yaml with its templates_dir line switched on, next to examples/templates/.
    config = (EXAMPLES / "lbgen.yaml").read_text()
    assert "\n# templates_dir: ./templates " in config
    (tmp_path / "lbgen.yaml").write_text(
        config.replace("\n# templates_dir: ./templates ", f"\ntemplates_dir: {EXAMPLES / 'templates'} "))
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "lbgen.yaml"), "render", "--from-file",
                                      str(EXAMPLES / "inventory.yaml"), "--env", "web=blue"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "\nlog_format lbgen_json escape=json " in text
    assert text.count("        add_header X-Request-ID $lbgen_request_id always;  # example\n") == 2  # web, api
    assert "server 10.20.0.11:8080 weight=1" in text  # and the backends of examples/inventory.yaml

    (tmp_path / "lbgen.conf").write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_config(tmp_path, tmp_path / "lbgen.conf", stock))
    checked = subprocess.run([real_binary("nginx"), "-t", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path),
                              "-c", str(main)], capture_output=True, text=True, timeout=60)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, f"nginx -t rejected the example template's output:\n{output}"
    assert "[warn]" not in output, output


def test_the_example_template_sets_the_bucket_size_a_long_host_needs(tmp_path):
    """Like the built-in one: a host name over 46 characters gets server_names_hash_bucket_size."""
    (tmp_path / "lbgen.yaml").write_text(
        f"network: app-net\ntemplates_dir: {EXAMPLES / 'templates'}\nproxy: {{kind: nginx, container: edge}}\n"
        "services:\n  web: {listen: 80, hosts: [my-service-name.staging.eu-west-1.example.internal]}\n")
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "lbgen.yaml"), "render", "--from-file",
                                      str(tmp_path / "inventory.yaml")])
    assert result.exit_code == 0, result.output
    assert "\nlog_format lbgen_json escape=json " in result.output  # the example's, not the built-in
    assert "\nserver_names_hash_bucket_size 128;\n" in result.output
