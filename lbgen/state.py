"""Where the active env, the switch history and health counts live, and the lock that serialises
writers. Both live with the proxy, not on the machine that ran lbgen: state is a JSON file inside the
proxy container; the lock is a marker container whose name derives from the proxy's id (Docker
container names are unique, so creating it is an atomic test-and-set that any host can see).
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lbgen.engine import Engine
from lbgen.model import HealthCount, HistoryEntry, Maintenance, Outcome
from lbgen.errors import LockHeld, ProxyError
from lbgen.events import EventSink, event

HISTORY_LIMIT = 200
STATE_FILE = "state.json"


@dataclass
class State:
    """The recorded active and previous env per service, the switch history (newest first), and the health
    counts per service and backend id that `lbgen health --apply` and watch keep between passes."""

    previous: dict[str, str | None] = field(default_factory=dict)
    recorded_active: dict[str, str | None] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    health: dict[str, dict[str, HealthCount]] = field(default_factory=dict)
    maintenance: dict[str, Maintenance] = field(default_factory=dict)  # services in maintenance mode

    def to_json(self) -> str:
        return json.dumps({"version": 1, "active": self.recorded_active, "previous": self.previous,
                           "history": [e.to_dict() for e in self.history[:HISTORY_LIMIT]],
                           "health": {svc: {bid: c.to_dict() for bid, c in counts.items()}
                                      for svc, counts in self.health.items()},
                           "maintenance": {svc: m.to_dict() for svc, m in self.maintenance.items()}},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        """An unreadable state file is treated as empty (the live config stays the truth); unreadable
        entries in a readable one are left out."""
        try:
            data = json.loads(text)
            return cls(previous=dict(data.get("previous", {})), recorded_active=dict(data.get("active", {})),
                       history=_entries(data.get("history", [])),
                       health={str(svc): {str(bid): HealthCount.from_dict(c) for bid, c in counts.items()}
                               for svc, counts in dict(data.get("health", {})).items()},
                       maintenance=_maintenance(data.get("maintenance", {})))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def ejected_ids(self) -> set[str]:
        """Ids of backends `lbgen health --apply` has taken out of their pools."""
        return {bid for per_service in self.health.values() for bid, c in per_service.items() if c.ejected}

    def record(self, entry: HistoryEntry) -> None:
        self.history.insert(0, entry)
        del self.history[HISTORY_LIMIT:]

    def last_switch(self, service: str) -> HistoryEntry | None:
        return next((e for e in self.history if e.service == service and e.outcome is Outcome.SWITCHED), None)


def _maintenance(raw: Any) -> dict[str, Maintenance]:
    out = {}
    for svc, item in dict(raw or {}).items():
        try:
            out[str(svc)] = Maintenance.from_dict(item)
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
    """state.json inside the proxy container, in `proxy.state_dir`."""

    def __init__(self, engine: Engine, container: str, state_dir: str) -> None:
        self.engine = engine
        self.container = container
        self.path = f"{state_dir.rstrip('/')}/{STATE_FILE}"
        self.state_dir = state_dir

    def load(self) -> State:
        data = self.engine.read_file(self.container, self.path)
        return State() if data is None else State.from_json(data.decode("utf-8", errors="replace"))

    def save(self, state: State) -> None:
        """Write state.json atomically (a temp file, then a rename), creating state_dir the first time."""
        tmp = self.path + ".tmp"
        data = state.to_json().encode()
        try:
            self.engine.put_file(self.container, tmp, data, 0o600)
        except FileNotFoundError:
            result = self.engine.exec(self.container, ["mkdir", "-p", "-m", "0700", self.state_dir])
            if result.exit_code != 0:
                raise ProxyError(f"cannot create {self.state_dir} in proxy container {self.container}: "
                                 f"{result.output.strip()[:200]}") from None
            self.engine.put_file(self.container, tmp, data, 0o600)
        except PermissionError as e:
            raise ProxyError(f"cannot write {self.path} in proxy container {self.container}: {e}") from e
        result = self.engine.exec(self.container, ["mv", "-f", tmp, self.path])
        if result.exit_code != 0:
            raise ProxyError(f"cannot write {self.path} in proxy container {self.container}: "
                             f"{result.output.strip()[:200]}")


def holder_identity() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": str(os.getpid())}


class ProxyLock:
    """An exclusive, bounded-wait lock on one proxy, shared by every lbgen that drives it.

    A holder that died is recovered without manual steps: on the same host when its pid is gone, and
    from anywhere once its lease has expired.
    """

    PREFIX = "lbgen-lock-"

    def __init__(self, engine: Engine, proxy_id: str, proxy_image: str, proxy_name: str, purpose: str,
                 wait: float = 30.0, lease: float = 300.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, log: EventSink | None = None) -> None:
        self.engine = engine
        self.name = self.PREFIX + proxy_id[:12]
        self.image = proxy_image
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
        from lbgen.errors import ContainerNotFound

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
        if labels.get("lbgen.lock.host") == socket.gethostname():
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
