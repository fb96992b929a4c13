"""Progress of a health gate on stderr: a live line on a terminal, plain change-only lines otherwise."""
from __future__ import annotations

from typing import TextIO

from lbgen.health import GateProgress


class GateDisplay:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_line = ""
        self.drawn = False

    def update(self, progress: GateProgress) -> None:
        passed = sum(1 for n in progress.passes.values() if n >= progress.rise)
        failing = [r.describe() for r in progress.last.values() if not r.ok]
        line = (f"gate: {passed}/{progress.required} healthy (rise {progress.rise}), "
                f"{progress.time_left:.0f}s left" + (f"; waiting on {', '.join(failing[:4])}" if failing else ""))
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:200])
            self.drawn = True
        elif _strip_time(line) != _strip_time(self.last_line):
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_line = line

    def finish(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _strip_time(line: str) -> str:
    """The line without its countdown, so off a terminal only real changes print."""
    head, _, tail = line.partition("s left")
    return head.rsplit(",", 1)[0] + tail
