"""Discovery sources behind one interface: `Source` (docker.py, inventory.py), `MultiSource` adding
several up, and `sort_backends`, the one order every source returns."""
from __future__ import annotations

from typing import Iterable, Protocol

from lbgen.model import Backend, Inventory


class Source(Protocol):
    def discover(self) -> Inventory:
        """What is there now: the routable backends, and what was skipped and why."""


def sort_backends(backends: Iterable[Backend]) -> tuple[Backend, ...]:
    """The one order every source returns (so rendered configs are byte-stable)."""
    return tuple(sorted(backends, key=lambda b: (b.service, b.env is not None, b.env or "", b.name, b.id, b.port)))


class MultiSource:
    """Several sources as one: their inventories added up (e.g. several Docker hosts, or Docker + a file)."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.sources = tuple(sources)

    def discover(self) -> Inventory:
        total = Inventory()
        for source in self.sources:
            total = total + source.discover()
        return Inventory(sort_backends(total.backends), total.skipped)
