"""Time lbgen as installed: pip compiles a package's modules to bytecode when it installs it, so every
bench compiles lbgen once first. Without that, an environment with PYTHONDONTWRITEBYTECODE set (or a
read-only checkout) compiles every module from source on every command, about 0.15-0.3 s on a 2-core
machine, which no user pays."""
from __future__ import annotations

import compileall
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_compiled() -> None:
    compileall.compile_dir(str(ROOT / "lbgen"), quiet=1)


def lbgen_command() -> str:
    """The `lbgen` console script of the interpreter running the bench, as a venv or `pip install`
    puts it, rather than whatever `lbgen` PATH finds first: a version manager's shim (pyenv's is a bash
    script that runs `pyenv exec`) adds about 0.1 s to every command, which lbgen's users need not pay
    and the `docker` binary it is compared with does not."""
    beside = Path(sys.executable).parent / "lbgen"
    if beside.is_file():
        return str(beside)
    found = shutil.which("lbgen")
    if found is None:
        raise SystemExit("lbgen is not installed (make install)")
    return found


LBGEN = lbgen_command()
