"""Running a `Watcher` under signal handlers: the only place in lbgen that installs them."""
from __future__ import annotations

import signal
import threading
from typing import Any

from lbgen.watch.loop import Watcher


def serve(watcher: Watcher, install_signals: bool = True) -> None:
    """Run `watcher` until SIGTERM or SIGINT (a clean stop: an apply in progress completes); SIGHUP
    re-reads lbgen.yaml."""
    stop = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        stop.set()
        watcher.wake()

    def on_hup(signum: int, frame: Any) -> None:
        watcher.request_reload()

    previous: dict[int, Any] = {}
    if install_signals:
        for sig, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup)):
            previous[sig] = signal.signal(sig, handler)
    try:
        watcher.run(stop)
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
