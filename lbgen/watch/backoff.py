"""A doubling delay with a cap: how long watch waits before it reconnects to the engine, and before it
retries an apply that failed."""
from __future__ import annotations


class Backoff:
    """`next()` gives `first`, then twice the last delay, up to `cap`; `reset()` starts again at `first`."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first
