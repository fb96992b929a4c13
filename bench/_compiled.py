"""Time lbgen as installed: pip compiles a package's modules to bytecode when it installs it, so every
bench compiles lbgen once first. Without that, an environment with PYTHONDONTWRITEBYTECODE set (or a
read-only checkout) compiles every module from source on every command, about 0.15-0.3 s on a 2-core
machine, which no user pays."""
from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_compiled() -> None:
    compileall.compile_dir(str(ROOT / "lbgen"), quiet=1)
