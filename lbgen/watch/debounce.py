"""How long to wait before acting on a burst of events: `Debouncer` (pure, the caller passes the time) and
the `--debounce MIN[:MAX]` grammar."""
from __future__ import annotations


def parse_debounce(text: str) -> tuple[float, float]:
    """`100ms:1s` -> (minimum quiet time, maximum delay) in seconds; `MIN` alone keeps the maximum at 1s
    (or MIN, if longer). `0` as the minimum applies as soon as the loop sees the event."""
    from lbgen.config_values import parse_duration

    low, sep, high = str(text).partition(":")

    def one(value: str) -> float:
        return 0.0 if value.strip() in ("0", "0s", "0ms") else parse_duration(value.strip())

    try:
        min_quiet = one(low)
        max_delay = one(high) if sep else max(1.0, min_quiet)
    except ValueError as e:
        raise ValueError(f"--debounce {text!r}: {e} (expected MIN[:MAX], e.g. 100ms:1s)") from None
    if max_delay < min_quiet:
        raise ValueError(f"--debounce {text!r}: the maximum delay is shorter than the minimum quiet time")
    return min_quiet, max_delay


class Debouncer:
    """When to act on a burst of events. Pure: the caller passes the time.

    Due `min_quiet` after the last event, but never later than `max_delay` after the first (docker-gen's
    `-wait MIN:MAX`). While a burst goes on, at most one action per `max_delay`: after `fired()`, the next
    one waits until `max_delay` has passed since then, so the first event after a quiet spell is applied
    fast and a long burst costs a reload per `max_delay`, not one per event.
    """

    def __init__(self, min_quiet: float = 0.1, max_delay: float = 1.0) -> None:
        self.min_quiet = min_quiet
        self.max_delay = max(max_delay, min_quiet)
        self.first: float | None = None
        self.last: float | None = None
        self.last_fired: float | None = None

    @property
    def pending(self) -> bool:
        return self.first is not None

    def add(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def deadline(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        due = min(self.last + self.min_quiet, self.first + self.max_delay)
        if self.last_fired is not None:
            due = max(due, min(self.last_fired + self.max_delay, self.first + self.max_delay))
        return due

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def clear(self) -> None:
        """Pending events are covered (an apply re-discovered after they arrived)."""
        self.first = self.last = None

    def fired(self, now: float) -> None:
        """An apply reloaded the proxy at `now`."""
        self.clear()
        self.last_fired = now

