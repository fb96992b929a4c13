"""`lbgen maintenance on|off`: record the mode in the state and make the proxy serve it (503 with a message and
Retry-After, backends untouched), returning once the new config is verifiably live."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lbgen.core import Core
from lbgen.errors import UsageError
from lbgen.events import event
from lbgen.model import HistoryEntry, Maintenance, Outcome
from lbgen.state import holder_identity

DEFAULT_MESSAGE = "Service temporarily unavailable for maintenance"
DEFAULT_RETRY_AFTER = 300


@dataclass
class MaintenanceResult:
    services: list[str]
    on: bool
    changed: bool  # the live config changed (False: it already served this)
    generation: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"services": self.services, "maintenance": self.on, "changed": self.changed,
                "generation": self.generation, "notes": self.notes}


def check_message(text: str) -> str:
    """Printable text, 1-200 characters (it becomes the body of the 503)."""
    if not text or len(text) > 200 or not text.isprintable():
        raise UsageError(f"--message: expected 1-200 printable characters, got {text[:60]!r}")
    return text


def run_maintenance(core: Core, on: bool, service: str | None = None, *, message: str | None = None,
                    retry_after: float | None = None, lock_wait: float = 30.0) -> MaintenanceResult:
    """Turn maintenance on or off for one service (or, with service None, every service), render, install,
    reload and verify, then record it (state and history). Raises like `apply` on a failed reload."""
    names = [core.config.service(service).name] if service is not None else list(core.config.services)
    text = check_message(message) if message is not None else DEFAULT_MESSAGE
    seconds = DEFAULT_RETRY_AFTER if retry_after is None else max(1, round(retry_after))
    if not on and (message is not None or retry_after is not None):
        raise UsageError("--message and --retry-after are for `maintenance on`")
    if service is not None and core.config.services[names[0]].mode == "tcp" and (message or retry_after):
        raise UsageError(f"--message and --retry-after are for HTTP services; {names[0]} has mode: tcp, whose "
                         f"maintenance refuses new connections")
    with core.lock(f"maintenance {'on' if on else 'off'} {service or 'all'}", wait=lock_wait):
        world = core.read_world(reconcile=True)
        core.proxy.preflight(world.live)
        state = world.state
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name in names:
            if on:
                state.maintenance[name] = Maintenance(text, seconds, since)
            else:
                state.maintenance.pop(name, None)
        rendered = core.desired(world, state=state)
        main = core.proxy.main_to_write(rendered.main)
        changed = world.live != rendered.text or (main is not None and core.proxy.read_main() != main)
        if changed:
            core.require_main_context(main)  # a TCP service's refusal lives in nginx's main-context file
            core.proxy.install(rendered.text, rendered.files, world.live, main=main)
            core.proxy.activate(rendered.generation)
        who = holder_identity()
        for name in names:
            active = world.active.get(name) or ""
            state.record(HistoryEntry(time=since, service=name, from_env=active or None, to_env=active,
                                      outcome=Outcome.MAINTENANCE_ON if on else Outcome.MAINTENANCE_OFF,
                                      duration=0.0, host=who["host"], user=who["user"]))
            core.log(event("maintenance", service=name, state="on" if on else "off"))
        core.store.save(state)
    return MaintenanceResult(names, on, changed, rendered.generation, list(world.notes))
