"""Discovery sources behind one interface: `Source` (docker.py, swarm.py, inventory.py), `MultiSource`
adding several up, `sort_backends`, the one order every source returns, and `Networks`, the rule that
picks the network a backend is routed on."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Protocol

from lbgen.engine import ContainerInfo, network_named
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


class Networks:
    """The configured networks (`network:`, in order) and the rule: a backend is routed on the first of
    them that it and the proxy share, at its IP there.

    With one network the proxy is not looked at (the backend must be on it, as always); with several,
    `proxy()` gives the proxy's container (None when it cannot be found: then every listed network counts).
    """

    def __init__(self, refs: Iterable[str], proxy: Callable[[], ContainerInfo | None] | None = None) -> None:
        self.refs = tuple(refs)
        self._proxy = proxy
        self._shared: tuple[str, ...] | None = None

    def shared(self) -> tuple[str, ...]:
        """The configured networks the proxy is attached to, in the configured order (read once)."""
        if self._shared is None:
            info = self._proxy() if self._proxy is not None and len(self.refs) > 1 else None
            if info is None:
                self._shared = self.refs
            else:
                self._shared = tuple(r for r in self.refs
                                     if network_named(r, info.networks, info.network_ids) is not None)
        return self._shared

    def pick(self, networks: Mapping[str, str], network_ids: Mapping[str, str]) -> tuple[str, str] | str:
        """(the network as configured, IP) for a backend attached to `networks` (name -> IP) /
        `network_ids`, or the reason it is not routable."""
        if len(self.refs) == 1:
            ref = self.refs[0]
            name = network_named(ref, networks, network_ids)
            if name is None:
                return f"not attached to network {ref} (the proxy could not reach it)"
            if name not in networks:
                return f"has no IP address on network {ref}"
            return ref, networks[name]
        shared = self.shared()
        unaddressed = []
        for ref in shared:
            name = network_named(ref, networks, network_ids)
            if name is not None and name in networks:
                return ref, networks[name]
            if name is not None:
                unaddressed.append(ref)
        if unaddressed:
            return f"has no IP address on network {unaddressed[0]}"
        if not shared:
            return f"the proxy is attached to none of the networks {', '.join(self.refs)}"
        return f"on none of the networks it could share with the proxy ({', '.join(shared)})"
