"""What an engine event means to watch: which actions stop a backend (apply at once), which start one,
and the reason an apply gives for it."""
from __future__ import annotations

from lbgen.engine import EngineEvent

# A stopping backend leaves its pool at once, before Docker reports it gone.
STOP_ACTIONS = frozenset({"kill", "stop", "die"})
# Applied at once too: a paused container answers nothing.
URGENT_ACTIONS = STOP_ACTIONS | {"pause"}
START_ACTIONS = frozenset({"start", "restart", "unpause"})
# `docker kill -s HUP` asks a backend to reload, not to stop (numbers as Docker reports them, and names).
NON_TERMINATING_SIGNALS = frozenset({"1", "10", "12", "28", "HUP", "USR1", "USR2", "WINCH", "SIGHUP", "SIGUSR1",
                                     "SIGUSR2", "SIGWINCH"})

def terminating(event: EngineEvent) -> bool:
    """Whether a kill/stop/die means the container is going away. A `kill` whose signal is known and only
    asks for a reload (HUP, USR1, ...) does not; an engine that does not say which signal counts as stopping."""
    signal_name = getattr(event, "signal", None)
    return signal_name is None or str(signal_name).upper() not in NON_TERMINATING_SIGNALS


def reason_for(action: str) -> str:
    if action in ("connect", "disconnect"):
        return f"network-{action}"
    if action == "health_status":
        return "container-health"
    if action.startswith("service-"):  # a Swarm service was created, scaled/updated or removed
        return action
    return f"container-{action}"
