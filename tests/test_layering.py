"""Imports run downward only: no module of lbgen imports one from a layer above it (docs/architecture.md),
counting imports inside functions and under TYPE_CHECKING too, so the old app <-> switch loop cannot return."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lbgen"

# Module (or package prefix) -> layer, as docs/architecture.md draws them. A module may import its own
# layer and below.
LAYERS: dict[str, int] = {
    "lbgen": 0, "lbgen.errors": 0, "lbgen.events": 0, "lbgen.grammar": 0, "lbgen.yamlfile": 0,
    "lbgen.timings": 0,
    "lbgen.model": 1, "lbgen.engine": 1, "lbgen.certs": 1, "lbgen.proxies": 1, "lbgen.proxies.base": 1,
    "lbgen.proxies.nginx": 1, "lbgen.proxies.haproxy": 1, "lbgen.proxies.haproxy_runtime": 1,
    "lbgen.proxies.scripts": 1, "lbgen.proxies.passwd": 1, "lbgen.canary": 1, "lbgen.sticky": 1,
    "lbgen.config": 2, "lbgen.config_routes": 2, "lbgen.config_values": 2, "lbgen.config_tcp": 2,
    "lbgen.docker_engine": 3, "lbgen.docker_convert": 3, "lbgen.sources": 3, "lbgen.proxies.driver": 3, "lbgen.render": 3,
    "lbgen.templating": 3, "lbgen.main_context": 3,
    "lbgen.routing": 3, "lbgen.drift": 3, "lbgen.expiry": 3, "lbgen.health": 3, "lbgen.probe": 3, "lbgen.ssh_transport": 3,
    "lbgen.state": 3, "lbgen.holder": 3, "lbgen.templates": 3, "lbgen.analysis": 3,
    "lbgen.core": 4,
    "lbgen.switch": 5, "lbgen.maintenance": 5, "lbgen.monitor": 5, "lbgen.report": 5, "lbgen.status": 5, "lbgen.doctor": 5,
    "lbgen.progressive": 5, "lbgen.doctor_stream": 5,
    "lbgen.watch": 6,
    "lbgen.app": 7,
    "lbgen.cli": 8, "lbgen.cli_common": 8, "lbgen.cli_monitor": 8, "lbgen.cli_maintenance": 8, "lbgen.cli_canary": 8, "lbgen.progress": 8, "lbgen.__main__": 8,
}
# lbgen/__init__.py re-exports the public API lazily (module __getattr__), so it names modules of every
# layer without importing any at import time; it is checked for that separately.
LAZY_ROOT = "lbgen"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int:
    probe = name
    while probe:
        if probe in LAYERS:
            return LAYERS[probe]
        probe = probe.rpartition(".")[0]
    raise KeyError(name)


def imports_of(path: Path) -> list[tuple[int, str]]:
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, here: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every lbgen module `source` (module `here`) imports: (line, module), wherever the import stands."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lbgen"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here if is_package else here.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            if base.split(".")[0] != "lbgen":
                continue
            for alias in node.names:
                # `from lbgen import x` / `from lbgen.watch import loop` may name a submodule
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or (PACKAGE.parent / rel / "__init__.py").exists()


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in MODULES if not _has_layer(module_name(p))]
    assert missing == [], f"give these a layer in tests/test_layering.py and docs/architecture.md: {missing}"


def _has_layer(name: str) -> bool:
    try:
        layer_of(name)
    except KeyError:
        return False
    return True


def upward(imports: list[tuple[int, str]], here: str) -> list[str]:
    return [f"line {line}: {target} (layer {layer_of(target)})" for line, target in imports
            if layer_of(target) > layer_of(here)]


@pytest.mark.parametrize("path", [p for p in MODULES if module_name(p) != LAZY_ROOT], ids=module_name)
def test_imports_run_downward(path: Path):
    here = module_name(path)
    found = upward(imports_of(path), here)
    assert found == [], f"{here} (layer {layer_of(here)}) imports upward: {found}"


def test_the_package_root_imports_nothing_heavy_at_import_time():
    """`lbgen/__init__.py` names the public API lazily: at module level it imports no lbgen module."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    eager = [node.lineno for node in tree.body
             if isinstance(node, (ast.Import, ast.ImportFrom)) and "lbgen" in ast.unparse(node)]
    assert eager == []


@pytest.mark.parametrize("source", [
    "def f():\n    from lbgen.app import Lbgen\n",                      # inside a function
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lbgen.switch\n",  # type-checking only
    "from . import core\n",                                            # relative
    "from lbgen import monitor\n",                                     # a submodule by from-import
])
def test_the_check_catches_every_form_of_upward_import(source: str):
    assert len(upward(imports_in(source, "lbgen.render"), "lbgen.render")) == 1


def test_the_check_allows_the_same_layer_and_below():
    assert upward(imports_in("from lbgen.config import Config\nfrom . import health\n", "lbgen.render"),
                  "lbgen.render") == []


def test_the_public_api_is_importable_from_the_root_and_lazy():
    import subprocess
    import sys

    code = ("import sys, lbgen\n"
            "assert [m for m in sys.modules if m.startswith('lbgen.')] == [], sorted(sys.modules)\n"
            "for name in lbgen.__all__:\n"
            "    assert getattr(lbgen, name) is not None, name\n"
            "from lbgen import Lbgen, load_config, SwitchResult, ExitCode\n"
            "print(Lbgen.__module__, int(ExitCode.GATE))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "lbgen.app 5\n"
