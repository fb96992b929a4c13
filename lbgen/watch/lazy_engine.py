"""`LazyEngine`: an Engine created on first use and re-created after a failed attempt, so watch can start
before the Docker daemon does."""
from __future__ import annotations

import threading
from typing import Any, Callable

from lbgen.engine import Engine


class LazyEngine:
    """An Engine made by `factory` on first use, and made again on the next call after a failed attempt:
    watch mode may start before the Docker daemon does."""

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _get(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)

