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

    The first event after a quiet spell (no event for `max_delay`) is due at once: a lone `docker run`
    is routed without waiting. Otherwise due `min_quiet` after the last event, but never later than
    `max_delay` after the first (docker-gen's `-wait MIN:MAX`). While a burst goes on, at most one action
    per `max_delay`: after `fired()`, the next one waits until `max_delay` has passed since then (a burst
    costs a reload per `max_delay`, not one per event; the at-once action of its first event is extra).
    A `hold` event (a network connect, which the container's own start follows) is never due at once:
    alone, it is due `hold` seconds later; the next event is judged as if it came first.
    """

    def __init__(self, min_quiet: float = 0.1, max_delay: float = 1.0, hold: float = 0.5) -> None:
        self.min_quiet = min_quiet
        self.max_delay = max(max_delay, min_quiet)
        self.hold = min(hold, self.max_delay)
        self.first: float | None = None  # the pending batch's first event
        self.last: float | None = None  # and its last
        self.first_unheld: float | None = None  # its first event that is not a hold one
        self.at_once = False  # the pending batch began after a quiet spell
        self.last_event: float | None = None  # the last event seen, in any batch
        self.last_fired: float | None = None
        self.covered_at_once = False  # what the last clear() covered began after a quiet spell

    @property
    def pending(self) -> bool:
        return self.first is not None

    def add(self, now: float, hold: bool = False) -> None:
        if self.first is None:
            self.first = now
            self.at_once = self.last_event is None or now - self.last_event >= self.max_delay
        self.last = self.last_event = now
        if not hold and self.first_unheld is None:
            self.first_unheld = now

    def deadline(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        if self.first_unheld is None:  # only hold events so far
            return self.first + self.hold
        if self.at_once:
            return self.first_unheld
        due = min(self.last + self.min_quiet, self.first + self.max_delay)
        if self.last_fired is not None:
            due = max(due, min(self.last_fired + self.max_delay, self.first + self.max_delay))
        return due

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def clear(self) -> None:
        """Pending events are covered (an apply re-discovered after they arrived)."""
        self.covered_at_once = self.at_once
        self.first = self.last = self.first_unheld = None
        self.at_once = False

    def fired(self, now: float) -> None:
        """An apply reloaded the proxy at `now` (after clear()). The one that answered a quiet spell's
        first event does not hold back the rest of its burst; every later one does."""
        at_once = self.covered_at_once if self.first is None else self.at_once
        self.clear()
        self.last_fired = None if at_once else now
