"""Shared fixtures: `docker_lab` / `lab` for integration tests on the real engine (tests/dockerlab.py), and
`fake_engine` for unit tests (tests/fakes.py)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from fakes import ...`, `from dockerlab import ...`

from fakes import FakeEngine  # noqa: E402

LAB_FIXTURES = {"docker_lab", "lab"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the Docker lab is an integration test, marked or not (so -m 'not integration' works)."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_lab(request: pytest.FixtureRequest):
    """One lab per test session: checks the daemon (fails, never skips, when there is none), builds the
    test image, and removes everything labelled with its session id at the end."""
    from dockerlab import DockerLab, LabError

    try:
        lab = DockerLab.open()
    except LabError as e:
        problem = str(e)
    else:
        request.addfinalizer(lab.close)
        return lab
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def lab(docker_lab) -> Iterator:
    """A per-test view of the lab: what the test creates is removed when it ends, pass or fail (in the
    background, while the next test runs; the session's lab waits for it and sweeps what is left)."""
    scope = docker_lab.scope()
    try:
        yield scope
    finally:
        docker_lab.close_later(scope)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()
