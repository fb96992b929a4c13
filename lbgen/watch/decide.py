"""What one apply of watch has to do, decided from a world (read afresh, or the one the last converge left:
Core.known): the render for the pools, and whether a health pass changes the counts; `read_and_decide`
picks which world."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from lbgen import monitor
from lbgen.health import CheckResult
from lbgen.model import Inventory
from lbgen.timings import Timings

if TYPE_CHECKING:
    from lbgen.core import Core, World
    from lbgen.render import Rendered


@dataclass(frozen=True)
class Decision:
    """The pools' inventory, the render, whether a health pass changes the counts; nothing to do when
    neither the text nor the counts change."""

    inventory: Inventory
    rendered: Rendered
    counts_change: bool
    same_text: bool

    @property
    def nothing_to_do(self) -> bool:
        return self.same_text and not self.counts_change


@dataclass(frozen=True)
class Unchanged:
    """An apply that found nothing to do (in the shape of an ApplyResult for the log and metrics)."""

    generation: str
    changed: bool = False


def decide(app: Core, world: World, inventory: Inventory, results: Mapping[str, Sequence[CheckResult]] | None,
           timings: Timings) -> Decision:
    """`inventory` (what the pools get: world's, less stopping backends, guarded) rendered with `world`'s
    record, a health pass's `results` folded into a copy of its counts."""
    trial = world.state
    if results is not None:
        trial = copy.deepcopy(world.state)
        monitor.fold(trial, monitor.targets_for(app.config, inventory, world.active), results)
    with timings.phase("render"):
        rendered = app.desired(world.with_inventory(inventory), state=trial)
    return Decision(inventory, rendered, trial.health != world.state.health, rendered.text == world.live)


def read_and_decide(app: Core, warm: bool, pools_of: Callable[[World], Inventory],
                    results: Mapping[str, Sequence[CheckResult]] | None, timings: Timings) -> tuple[World, Decision]:
    """The world and the decision for one apply. `warm`: judged first against what the last converge
    left live (Core.known) with only a fresh discovery; what looks like nothing to do there is confirmed
    by a fresh read of the proxy and the record (reusing that discovery), as is every cold apply."""
    known = app.known if warm else None
    inventory = None
    if known is not None:
        with timings.phase("discover"):
            inventory = app.discover()
        world = known.with_inventory(inventory)
        decision = decide(app, world, pools_of(world), results, timings)
        if not decision.nothing_to_do:
            return world, decision
    world = app.read_world(timings=timings, inventory=inventory)
    app.known = world  # read afresh: the next event is judged against it
    return world, decide(app, world, pools_of(world), results, timings)
