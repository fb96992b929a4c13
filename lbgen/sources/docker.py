"""Docker discovery: containers labelled `<prefix>.service` -> Backends, or Skipped with a one-line reason.

Every label value passes lbgen.grammar here; a container with bad labels is skipped, never routed with defaults.
"""
from __future__ import annotations

from typing import Any

from lbgen import grammar
from lbgen.engine import ContainerInfo, Engine
from lbgen.model import Backend, Inventory, Skipped
from lbgen.sources import sort_backends

LABELS = ("service", "env", "port", "weight", "backup")  # the known `<prefix>.*` labels, in help order
_REQUIRED = object()


class DockerSource:
    """Containers labelled `<prefix>.service`, addressed by their IP on the proxy's network."""

    def __init__(self, engine: Engine, network: str, label_prefix: str = "lbgen") -> None:
        self.engine = engine
        self.network = network
        self.prefix = grammar.label_prefix(label_prefix)

    def discover(self) -> Inventory:
        backends: list[Backend] = []
        skipped: list[Skipped] = []
        for info in self.engine.list_containers(f"{self.prefix}.service"):
            result = self.backend(info)
            if isinstance(result, Backend):
                backends.append(result)
            else:
                skipped.append(result)
        return Inventory(sort_backends(backends), tuple(sorted(skipped, key=lambda s: (s.name, s.reason))))

    def backend(self, info: ContainerInfo) -> Backend | Skipped:
        """One container as a Backend, or as a Skipped saying why not."""
        try:
            name = grammar.container_name(info.name)
        except ValueError as e:
            return Skipped(grammar._show(info.name), str(e))
        if not info.running:
            return Skipped(name, "not running")
        labels = {k[len(self.prefix) + 1:]: v for k, v in info.labels.items() if k.startswith(self.prefix + ".")}
        unknown = sorted(k for k in labels if k not in LABELS)
        if unknown:
            known = ", ".join(f"{self.prefix}.{k}" for k in LABELS)
            return Skipped(name, f"unknown label {grammar._show(self.prefix + '.' + unknown[0])} (known: {known})")
        try:
            service = self._label(labels, "service", grammar.name)
            env = self._label(labels, "env", grammar.name, None)
            port = self._label(labels, "port", grammar.port, None)
            weight = self._label(labels, "weight", grammar.weight, 1)
            backup = self._label(labels, "backup", grammar.boolean, False)
        except ValueError as e:
            return Skipped(name, str(e))
        if port is None:
            if len(info.exposed_ports) != 1:
                found = ("no exposed TCP port" if not info.exposed_ports else
                         f"several exposed TCP ports ({', '.join(map(str, info.exposed_ports))})")
                return Skipped(name, f"no {self.prefix}.port label and {found}; set {self.prefix}.port")
            try:
                port = grammar.port(info.exposed_ports[0])  # Docker's word, but it reaches the config too
            except ValueError as e:
                return Skipped(name, f"exposed port {e}")
        network = self._network_of(info)
        if network is None:
            return Skipped(name, f"not attached to network {self.network} (the proxy could not reach it)")
        if network not in info.networks:
            return Skipped(name, f"has no IP address on network {self.network}")
        # A container whose HEALTHCHECK is starting or unhealthy is listed with its docker_health (the
        # switch gate waits for it); lbgen.routing keeps it out of every pool until it is healthy.
        if info.health is not None and info.health not in ("starting", "unhealthy", "healthy"):
            return Skipped(name, f"docker health is {_word(info.health)}")
        try:
            address = grammar.address(info.networks[network])
            container_id = grammar.container_id(info.id)
        except ValueError as e:
            return Skipped(name, str(e))
        return Backend(service=service, env=env, name=name, id=container_id, address=address, port=port,
                       weight=weight, backup=backup, docker_health=info.health, source="docker")

    def _label(self, labels: dict[str, str], key: str, check: Any, default: Any = _REQUIRED) -> Any:
        if key not in labels:
            if default is _REQUIRED:
                raise ValueError(f"label {self.prefix}.{key} is missing")
            return default
        try:
            return check(labels[key])
        except ValueError as e:
            raise ValueError(f"label {self.prefix}.{key}: {e}") from None

    def _network_of(self, info: ContainerInfo) -> str | None:
        """The name under which the container knows the configured network (given by name, id or id prefix)."""
        if self.network in info.networks or self.network in info.network_ids:
            return self.network
        for name, network_id in info.network_ids.items():
            if network_id == self.network or (len(self.network) >= 12 and network_id.startswith(self.network)):
                return name
        return None


def _word(value: str) -> str:
    return value if value in ("starting", "unhealthy", "healthy") else grammar._show(value)
