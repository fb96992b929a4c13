"""Watch's log: one key=value line or one JSON object per event on a stream; each warning logged once."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from lbgen.events import WARNING, Event, event


class EventLog:
    """One line per action on a stream: `event=apply service=web reason=container-start backends=4
    took=0.21s`, or one JSON object per line with `fmt="json"` (for log shippers)."""

    MAX_REMEMBERED = 10_000

    def __init__(self, stream: TextIO | None = None, fmt: str = "text", wall: Callable[[], float] = time.time) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"log format {fmt!r}: expected text or json")
        self.stream = stream
        self.fmt = fmt
        self.wall = wall
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def __call__(self, name: str, **fields: Any) -> None:
        """Log one of watch's own events."""
        self.emit(event(name, **fields))

    def emit(self, e: Event) -> None:
        """Log an event (this is the EventSink the core gets). Warnings, such as a skipped container,
        repeat on every discovery; each is logged once."""
        if e.name == WARNING:
            text = str(e.get("message"))
            with self._lock:
                if text in self._seen:
                    return
                if len(self._seen) >= self.MAX_REMEMBERED:
                    self._seen.clear()
                self._seen.add(text)
        self._write(e.json(self.wall()) if self.fmt == "json" else e.kv())

    def forget_warnings(self) -> None:
        with self._lock:
            self._seen.clear()

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

