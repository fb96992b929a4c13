"""Structured events: the core says what happened as `Event(name, fields)`; turning one into a line of
text or JSON happens at the edge (the CLI's stderr, watch's log), once, here.

No module builds a log line by hand, and none parses one back.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

WARNING = "warning"


@dataclass(frozen=True)
class Event:
    """One thing that happened: `switched`, `lock-recovered`, `eject`, `warning` (with `message`), ..."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def kv(self) -> str:
        """`event=NAME key=value ...`: the text form, one line, values quoted where they must be."""
        return " ".join([f"event={self.name}"] + [f"{k}={_kv(v)}" for k, v in self.fields.items()])

    def human(self) -> str:
        """How the one-shot CLI shows it on stderr: a warning as `warning: MESSAGE`, anything else as kv()."""
        if self.name == WARNING and set(self.fields) == {"message"}:
            return f"warning: {self.fields['message']}"
        return self.kv()

    def json(self, wall: float | None = None) -> str:
        """One JSON object: `{"time": ..., "event": NAME, **fields}`."""
        stamp = time.time() if wall is None else wall
        return json.dumps({"time": iso_ms(stamp), "event": self.name, **self.fields}, default=str)

    def __str__(self) -> str:
        return self.human()


# Where the core sends its events; `Lbgen(log=...)`, watch's EventLog, a test's list.append.
EventSink = Callable[[Event], None]


def event(name: str, **fields: Any) -> Event:
    """An Event; fields that are None are left out."""
    return Event(name, {k: v for k, v in fields.items() if v is not None})


def warning(message: str) -> Event:
    return Event(WARNING, {"message": message})


def discard(_: Event) -> None:
    """An EventSink that drops everything."""


def _kv(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    if not text or any(c in text for c in ' "=\\\t\n'):
        return json.dumps(text)
    return text


def iso_ms(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
