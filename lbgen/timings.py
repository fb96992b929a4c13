"""Per-phase timings of one change (connect (the Docker SDK's import and the engine client, once per
process), lock, reconcile, discover, gate, render, deliver, validate, runtime
(HAProxy's runtime API instead of a reload), reload, verify, record): one recorder filled as the change runs, read by apply, switch and watch.
And `bulk()`: the garbage collector paused while a large inventory or lbgen.yaml is read or rendered."""
from __future__ import annotations

import gc
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Callable, Iterator

#: The phases a change goes through, in order (a change skips those it does not need).
PHASES = ("connect", "lock", "reconcile", "discover", "gate", "render", "deliver", "validate", "runtime", "reload", "verify",
          "record")


class Timings:
    """Seconds spent per phase; a phase entered twice adds up. `total` is the wall time from creation
    until `finish()` (so it covers the gaps between phases too)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.phases: dict[str, float] = {}
        self.total: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as `name` (counted even when the block raises)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}")
        t = self.clock()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + (self.clock() - t)

    def finish(self) -> Timings:
        """Fix `total` now (later calls keep the first)."""
        if self.total is None:
            self.total = self.clock() - self.started
        return self

    def as_dict(self) -> dict[str, float]:
        """The phases in PHASES order, then `total`."""
        data = {name: self.phases[name] for name in PHASES if name in self.phases}
        data["total"] = self.total if self.total is not None else self.clock() - self.started
        return data

    def fields(self) -> dict[str, str]:
        """The phases as log fields: `lock=0.01s discover=0.12s ...` (`total` left to the caller's took=)."""
        return {name: f"{secs:.2f}s" for name, secs in self.as_dict().items() if name != "total"}


def phase(timings: Timings | None, name: str) -> AbstractContextManager[None]:
    """`timings.phase(name)`, or a no-op when no recorder was passed."""
    return timings.phase(name) if timings is not None else nullcontext()


@contextmanager
def bulk() -> Iterator[None]:
    """The cyclic garbage collector paused for a block that builds many objects and no cycles (reading a
    50,000-backend inventory, rendering it): its passes over them would only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
