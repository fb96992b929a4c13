"""Small helpers shared by test modules."""
from __future__ import annotations

import shutil
from typing import Any

import pytest


def report_figures(request: Any, line: str) -> None:
    """Print a line of figures past pytest's capture (shown with -q too)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def real_binary(name: str) -> str:
    """The path of nginx or haproxy on this machine; the test fails (never skips) without it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed; these tests validate with the real binary", pytrace=False)
    return path
