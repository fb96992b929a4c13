"""`lbgen watch`: follow Docker events and keep the proxy in line. `run_watch` builds the pieces (log,
engine, metrics, `Watcher`) and serves until stopped."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TextIO

from lbgen.engine import Engine
from lbgen.watch.lazy_engine import LazyEngine
from lbgen.watch.log import EventLog
from lbgen.watch.loop import Watcher
from lbgen.watch.serve import serve
from lbgen.watch.metrics import Metrics, MetricsServer

if TYPE_CHECKING:
    from lbgen.core import Core


def run_watch(load_app: Callable[[EventLog, Engine], Core], engine_factory: Callable[[], Engine], *,
              interval: float | None = None, debounce: tuple[float, float] = (0.1, 1.0), log_format: str = "text",
              metrics_port: int | None = None, metrics_addr: str = "127.0.0.1", lock_wait: float = 30.0,
              stream: TextIO | None = None) -> None:
    """`lbgen watch`: build the pieces and serve until stopped. A bad lbgen.yaml at start raises."""
    log = EventLog(stream, log_format)
    engine = LazyEngine(engine_factory)
    metrics = Metrics()
    watcher = Watcher(lambda: load_app(log, engine), engine, interval=interval, min_quiet=debounce[0],
                      max_delay=debounce[1], lock_wait=lock_wait, log=log, metrics=metrics)
    server = None
    if metrics_port is not None:
        server = MetricsServer(metrics, metrics_addr, metrics_port).start()
        log("metrics", listen=f"{metrics_addr}:{server.port}", path="/metrics")
    try:
        serve(watcher)
    finally:
        if server is not None:
            server.close()
