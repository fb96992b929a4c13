"""The record (active and previous env per service, switch history, health counts) and the lock that
serialises its writers. Both live on the Docker engine, keyed by the proxy's configured name, and outlive
the proxy container: the record in its state holder (lbgen.holder), the lock in a marker container named
`lbgen-lock-<proxy name>` (names are unique per engine, so creating it is an atomic test-and-set).
"""
from __future__ import annotations

import enum
import getpass
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from lbgen.engine import Engine
from lbgen.model import AnalysisRecord, Canary, HealthCount, HistoryEntry, Maintenance, Outcome
from lbgen.errors import ContainerNotFound, LockHeld
from lbgen.holder import IMAGE, LABEL, Holder, image_rootfs
from lbgen.events import EventSink, event

T = TypeVar("T")

HISTORY_LIMIT = 200
STATE_FILE = "state.json"


class Origin(str, enum.Enum):
    """Where a loaded State came from."""

    RECORD = "record"  # the state holder on the engine
    CARRIED_OVER = "carried-over"  # state.json inside a proxy configured by an lbgen before the holder
    NONE = "none"  # no record anywhere: every active env is assumed (default_env, or the only env)


@dataclass
class State:
    """The recorded active and previous env per service, the switch history (newest first), and the health
    counts per service and backend id that `lbgen health --apply` and watch keep between passes."""

    previous: dict[str, str | None] = field(default_factory=dict)
    recorded_active: dict[str, str | None] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    health: dict[str, dict[str, HealthCount]] = field(default_factory=dict)
    maintenance: dict[str, Maintenance] = field(default_factory=dict)  # services in maintenance mode
    canary: dict[str, Canary] = field(default_factory=dict)  # services with a canary in progress
    # services under a post-promotion analysis (`switch --analysis`) -> the env analysed
    analysed: dict[str, str] = field(default_factory=dict)
    analysis: dict[str, AnalysisRecord] = field(default_factory=dict)  # each service's last analysed window
    origin: Origin = field(default=Origin.NONE, compare=False)

    def recorded(self, service: str) -> bool:
        """Whether a switch of `service` is on record (else its active env is assumed)."""
        return self.recorded_active.get(service) is not None

    def to_json(self) -> str:
        return json.dumps({"version": 1, "active": self.recorded_active, "previous": self.previous,
                           "history": [e.to_dict() for e in self.history[:HISTORY_LIMIT]],
                           "health": {svc: {bid: c.to_dict() for bid, c in counts.items()}
                                      for svc, counts in self.health.items()},
                           "maintenance": {svc: m.to_dict() for svc, m in self.maintenance.items()},
                           "canary": {svc: c.to_dict() for svc, c in self.canary.items()},
                           "analysed": self.analysed,
                           "analysis": {svc: a.to_dict() for svc, a in self.analysis.items()}},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        """An unreadable record is treated as empty; unreadable entries in a readable one are left out."""
        try:
            data = json.loads(text)
            return cls(previous=dict(data.get("previous", {})), recorded_active=dict(data.get("active", {})),
                       history=_entries(data.get("history", [])),
                       health={str(svc): {str(bid): HealthCount.from_dict(c) for bid, c in counts.items()}
                               for svc, counts in dict(data.get("health", {})).items()},
                       maintenance=_per_service(data.get("maintenance"), Maintenance.from_dict),
                       canary=_per_service(data.get("canary"), Canary.from_dict),
                       analysed={str(k): str(v) for k, v in dict(data.get("analysed", {})).items()},
                       analysis=_per_service(data.get("analysis"), AnalysisRecord.from_dict))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def logged(self) -> frozenset[str]:
        """The services whose requests the proxy logs for an analysis: a canary, or a post-promotion window."""
        return frozenset(self.canary) | frozenset(self.analysed)

    def ejected_ids(self) -> set[str]:
        """Ids of backends `lbgen health --apply` has taken out of their pools."""
        return {bid for per_service in self.health.values() for bid, c in per_service.items() if c.ejected}

    def record(self, entry: HistoryEntry) -> None:
        self.history.insert(0, entry)
        del self.history[HISTORY_LIMIT:]

    def last_switch(self, service: str) -> HistoryEntry | None:
        return next((e for e in self.history if e.service == service and e.outcome is Outcome.SWITCHED), None)


def _per_service(raw: Any, parse: Callable[[Any], T]) -> dict[str, T]:
    """A per-service mapping of the record (maintenance, canary, analysis); a record written before the
    kind existed has none, and an unreadable entry is left out."""
    out = {}
    for svc, item in dict(raw or {}).items():
        try:
            out[str(svc)] = parse(item)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _entries(raw: Any) -> list[HistoryEntry]:
    entries = []
    for item in raw:
        try:
            entries.append(HistoryEntry.from_dict(item))
        except (ValueError, KeyError, TypeError):
            continue
    return entries


class StateStore:
    """The record on the engine (lbgen.holder), keyed by the proxy's configured name; and, for carrying
    over what older lbgens kept, state.json inside the proxy container, in `proxy.state_dir`."""

    def __init__(self, engine: Engine, proxy: str, state_dir: str,
                 legacy_container: Callable[[], str] | None = None) -> None:
        """`proxy`: the configured proxy name (the record's key); `legacy_container`: which container holds
        an older lbgen's state.json (default: the one named `proxy`; a Swarm proxy's task container)."""
        self.engine = engine
        self.proxy = proxy
        self.legacy_container = legacy_container or (lambda: proxy)
        self.holder = Holder(engine, proxy)
        self.legacy_path = f"{state_dir.rstrip('/')}/{STATE_FILE}"
        self.retired_path = self.legacy_path + ".carried-over"

    def load(self) -> State:
        """The newest valid record; else what the proxy container holds from an older lbgen (to be carried
        over); else an empty State with origin NONE."""
        try:
            slot = self.holder.read()
        except ContainerNotFound:
            slot = None
        if slot is not None:
            state = State.from_json(slot.body)
            state.origin = Origin.RECORD
            return state
        legacy = self._read_legacy()
        if legacy is None:
            return State()
        state = State.from_json(legacy)
        state.origin = Origin.CARRIED_OVER
        return state

    def save(self, state: State) -> None:
        """Write the record (the caller holds the lock). Carrying over ends here: the proxy's old
        state.json is renamed, so that a holder deleted later is not silently refilled from it."""
        self.holder.write(state.to_json())
        if state.origin is Origin.CARRIED_OVER:
            try:
                self.engine.exec(self.legacy_container(), ["mv", "-f", self.legacy_path, self.retired_path])
            except ContainerNotFound:
                pass  # the proxy is gone; the record is written, which is what counts
        state.origin = Origin.RECORD

    def _read_legacy(self) -> str | None:
        try:
            data = self.engine.read_file(self.legacy_container(), self.legacy_path)
        except (ContainerNotFound, OSError):
            return None
        return None if data is None else data.decode("utf-8", errors="replace")


def _hostname() -> str:
    import socket  # here: `lbgen render` starts without it

    return socket.gethostname()


def holder_identity() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": _hostname(), "pid": str(os.getpid())}


class ProxyLock:
    """An exclusive, bounded-wait lock on one proxy, shared by every lbgen that drives it.

    A holder that died is recovered without manual steps: on the same host when its pid is gone, and
    from anywhere once its lease has expired.
    """

    PREFIX = "lbgen-lock-"

    def __init__(self, engine: Engine, proxy_name: str, purpose: str, wait: float = 30.0, lease: float = 300.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 log: EventSink | None = None) -> None:
        self.engine = engine
        # Keyed by the proxy's configured name, like the record: a recreated proxy keeps its lock.
        self.name = self.PREFIX + proxy_name
        self.image = IMAGE
        self.proxy_name = proxy_name
        self.purpose = purpose
        self.wait = wait
        self.lease = lease
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self.marker_id: str | None = None

    def _labels(self) -> dict[str, str]:
        ident = holder_identity()
        now = self.clock()
        return {
            "lbgen.lock": "1",
            LABEL: self.proxy_name,
            "lbgen.lock.user": ident["user"][:64],
            "lbgen.lock.host": ident["host"][:128],
            "lbgen.lock.pid": ident["pid"],
            "lbgen.lock.purpose": self.purpose[:200],
            "lbgen.lock.since": f"{now:.3f}",
            "lbgen.lock.expires": f"{now + self.lease:.3f}",
        }

    def acquire(self) -> None:
        deadline = self.clock() + self.wait
        delay = 0.05
        self.engine.ensure_image(self.image, image_rootfs())
        while True:
            marker = self.engine.create_marker(self.name, self.image, self._labels())
            if marker:
                self.marker_id = marker
                return
            holder = self._holder()
            if holder is None:
                continue  # released between our attempt and our look
            if self._is_stale(holder):
                if self.log:
                    self.log(event("lock-recovered", proxy=self.proxy_name, stale_holder=_who(holder["labels"])))
                self.engine.remove_container(holder["id"])
                continue
            if self.clock() >= deadline:
                labels = holder["labels"]
                since = time.strftime("%H:%M:%S", time.localtime(float(labels.get("lbgen.lock.since", "0"))))
                raise LockHeld(
                    f"another lbgen holds the lock on proxy {self.proxy_name}: {_who(labels)} "
                    f"({labels.get('lbgen.lock.purpose', '?')}, since {since}); waited {self.wait:g}s"
                )
            self.sleep(delay)
            delay = min(delay * 2, 0.5)

    def release(self) -> None:
        if self.marker_id:
            self.engine.remove_container(self.marker_id)
            self.marker_id = None

    def _holder(self) -> dict[str, Any] | None:
        try:
            info = self.engine.get_container(self.name)
        except ContainerNotFound:
            return None
        return {"id": info.id, "labels": dict(info.labels)}

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        labels = holder["labels"]
        try:
            expires = float(labels.get("lbgen.lock.expires", "0"))
        except ValueError:
            return True
        if self.clock() > expires:
            return True
        if labels.get("lbgen.lock.host") == _hostname():
            pid = labels.get("lbgen.lock.pid", "")
            return pid.isdigit() and not _pid_alive(int(pid))
        return False

    def __enter__(self) -> ProxyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _who(labels: dict[str, str]) -> str:
    return f"{labels.get('lbgen.lock.user', '?')}@{labels.get('lbgen.lock.host', '?')} pid {labels.get('lbgen.lock.pid', '?')}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
