"""lbgen: discover Docker backends, render nginx/HAProxy configs, and switch traffic between releases.

The public Python API, imported on first use so that `lbgen --version` stays fast:

    from lbgen import Lbgen, load_config
    lb = Lbgen(load_config("lbgen.yaml"))
    lb.switch("green", service="web")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Lbgen": "lbgen.app",
    "Config": "lbgen.config", "load_config": "lbgen.config", "parse_config": "lbgen.config",
    "ApplyResult": "lbgen.core",
    "SwitchResult": "lbgen.switch",
    "HealthReport": "lbgen.report",
    "StatusReport": "lbgen.status",
    "Backend": "lbgen.model", "Inventory": "lbgen.model", "HistoryEntry": "lbgen.model", "Outcome": "lbgen.model",
    "Event": "lbgen.events",
    "ExitCode": "lbgen.errors", "LbgenError": "lbgen.errors", "UsageError": "lbgen.errors",
    "ConfigError": "lbgen.errors", "DockerUnavailable": "lbgen.errors", "HealthGateFailed": "lbgen.errors",
    "ReloadFailed": "lbgen.errors", "LockHeld": "lbgen.errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from lbgen.app import Lbgen  # noqa: F401
    from lbgen.config import Config, load_config, parse_config  # noqa: F401
    from lbgen.core import ApplyResult  # noqa: F401
    from lbgen.errors import (ConfigError, DockerUnavailable, ExitCode, HealthGateFailed, LbgenError,  # noqa: F401
                              LockHeld, ReloadFailed, UsageError)
    from lbgen.events import Event  # noqa: F401
    from lbgen.model import Backend, HistoryEntry, Inventory, Outcome  # noqa: F401
    from lbgen.report import HealthReport  # noqa: F401
    from lbgen.status import StatusReport  # noqa: F401
    from lbgen.switch import SwitchResult  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lbgen' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
