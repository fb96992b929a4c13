"""The wheel: it carries every module and the templates (top-level templates/ -> lbgen/templates/), and
the installed copy renders a config on its own, away from the checkout and its editable install."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RENDER_ARGS = ["-c", str(EXAMPLES / "lbgen.yaml"), "render", "--from-file", str(EXAMPLES / "inventory.yaml"),
               "--env", "web=blue"]

# Runs the installed console script and then reports, from the same process, which files every lbgen
# module and the templates were loaded from (and the finders, should the editable install win).
PROBE = """\
import importlib.resources, json, runpy, sys
script = sys.argv[1]
sys.argv = ["lbgen", *sys.argv[2:]]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    modules = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
               if name == "lbgen" or name.startswith("lbgen.")}
    print("PROBE " + json.dumps({"modules": modules,
                                 "templates": str(importlib.resources.files("lbgen.templates")),
                                 "meta_path": [repr(finder) for finder in sys.meta_path]}), file=sys.stderr)
"""


def pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (setuptools writes build/ and *.egg-info where it builds),
    without build isolation (no index needed; the test extra brings setuptools and wheel)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis"))
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "dist"), str(source), cwd=work)
    (built,) = (work / "dist").glob("lbgen-*.whl")
    return built


def test_the_wheel_carries_the_templates_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())

    assert {"lbgen/templates/nginx.conf.j2", "lbgen/templates/haproxy.cfg.j2"} <= names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lbgen").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel (add their package to pyproject.toml)"
    # Nothing lands outside the lbgen package: no top-level `templates` package in site-packages.
    assert {n.split("/")[0] for n in names} == {"lbgen", "-".join(wheel.name.split("-")[:2]) + ".dist-info"}


def test_the_installed_wheel_renders_from_its_own_copy(wheel, tmp_path):
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--no-compile", "--target", str(site), str(wheel), cwd=tmp_path)
    script = site / "bin" / "lbgen"
    assert script.is_file()
    # PYTHONPATH puts the installed copy ahead of site-packages, where the editable install's .pth and
    # finder live; the cwd is not the checkout, whose lbgen/ `-c` would otherwise import first.
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", PROBE, str(script), *RENDER_ARGS], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    probe_line = [line for line in result.stderr.splitlines() if line.startswith("PROBE ")][-1]
    probe = json.loads(probe_line[len("PROBE "):])
    installed = site.resolve()
    elsewhere = {name: path for name, path in probe["modules"].items()
                 if path is None or not Path(path).resolve().is_relative_to(installed)}
    assert elsewhere == {}, f"imported from outside {installed}; finders: {probe['meta_path']}"
    assert {"lbgen.cli", "lbgen.render", "lbgen.templates", "lbgen.sources.inventory"} <= set(probe["modules"])
    assert Path(probe["templates"]).resolve() == installed / "lbgen" / "templates"
    # The same config as the checkout renders: the installed templates are the checkout's templates.
    expected = CliRunner().invoke(cli, RENDER_ARGS)
    assert expected.exit_code == 0, expected.output
    assert result.stdout == expected.output
    assert result.stdout.startswith("# lbgen-meta: ") and "\nupstream lbgen_web {\n" in result.stdout
