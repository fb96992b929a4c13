"""Watch's engine is created when first used and again after a failed attempt."""
from __future__ import annotations

import pytest

from fakes import FakeEngine
from lbgen.errors import DockerUnavailable
from lbgen.watch.lazy_engine import LazyEngine


def test_lazy_engine_retries_creation():
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise DockerUnavailable("cannot reach the Docker daemon")
        return FakeEngine()

    engine = LazyEngine(factory)
    with pytest.raises(DockerUnavailable):
        engine.ping()
    engine.ping()
    engine.ping()
    assert len(attempts) == 2

