"""Docker discovery: containers labelled `<prefix>.service` -> Backends, or Skipped with a one-line reason.

Every label value passes lbgen.grammar here; a container with bad labels is skipped, never routed with defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from lbgen import grammar
from lbgen.engine import SWARM_TASK_LABEL, ContainerInfo, Engine
from lbgen.model import Backend, Inventory, Skipped
from lbgen.sources import Networks, sort_backends

LABELS = ("service", "env", "port", "weight", "backup")  # the known `<prefix>.*` labels, in help order
_REQUIRED = object()


@dataclass(frozen=True)
class Labels:
    """The `<prefix>.*` labels of one container or service, checked."""

    service: str
    env: str | None
    port: int | None
    weight: int
    backup: bool


def read_labels(prefix: str, raw: Mapping[str, str]) -> Labels:
    """The `<prefix>.*` labels out of `raw`; ValueError saying what is wrong (unknown, missing, invalid)."""
    labels = {k[len(prefix) + 1:]: v for k, v in raw.items() if k.startswith(prefix + ".")}
    unknown = sorted(k for k in labels if k not in LABELS)
    if unknown:
        known = ", ".join(f"{prefix}.{k}" for k in LABELS)
        raise ValueError(f"unknown label {grammar._show(prefix + '.' + unknown[0])} (known: {known})")
    return Labels(service=_label(prefix, labels, "service", grammar.name),
                  env=_label(prefix, labels, "env", grammar.name, None),
                  port=_label(prefix, labels, "port", grammar.port, None),
                  weight=_label(prefix, labels, "weight", grammar.weight, 1),
                  backup=_label(prefix, labels, "backup", grammar.boolean, False))


class DockerSource:
    """Containers labelled `<prefix>.service`, addressed by their IP on the first configured network they
    share with the proxy. With `skip_swarm_tasks`, containers Swarm runs for a task are left to SwarmSource."""

    def __init__(self, engine: Engine, network: str | Iterable[str] | Networks, label_prefix: str = "lbgen",
                 skip_swarm_tasks: bool = False) -> None:
        self.engine = engine
        if isinstance(network, str):
            network = (network,)
        self.networks = network if isinstance(network, Networks) else Networks(network)
        self.network = self.networks.refs[0]
        self.prefix = grammar.label_prefix(label_prefix)
        self.skip_swarm_tasks = skip_swarm_tasks

    def discover(self) -> Inventory:
        backends: list[Backend] = []
        skipped: list[Skipped] = []
        for info in self.engine.list_containers(f"{self.prefix}.service"):
            if self.skip_swarm_tasks and SWARM_TASK_LABEL in info.labels:
                continue
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
        try:
            labels = read_labels(self.prefix, info.labels)
        except ValueError as e:
            return Skipped(name, str(e))
        port = labels.port
        if port is None:
            if len(info.exposed_ports) != 1:
                found = ("no exposed TCP port" if not info.exposed_ports else
                         f"several exposed TCP ports ({', '.join(map(str, info.exposed_ports))})")
                return Skipped(name, f"no {self.prefix}.port label and {found}; set {self.prefix}.port")
            try:
                port = grammar.port(info.exposed_ports[0])  # Docker's word, but it reaches the config too
            except ValueError as e:
                return Skipped(name, f"exposed port {e}")
        picked = self.networks.pick(info.networks, info.network_ids)
        if isinstance(picked, str):
            return Skipped(name, picked)
        network, ip = picked
        # A container whose HEALTHCHECK is starting or unhealthy is listed with its docker_health (the
        # switch gate waits for it); lbgen.routing keeps it out of every pool until it is healthy.
        if info.health is not None and info.health not in ("starting", "unhealthy", "healthy"):
            return Skipped(name, f"docker health is {_word(info.health)}")
        try:
            address = grammar.address(ip)
            container_id = grammar.container_id(info.id)
        except ValueError as e:
            return Skipped(name, str(e))
        return Backend(service=labels.service, env=labels.env, name=name, id=container_id, address=address,
                       port=port, weight=labels.weight, backup=labels.backup, docker_health=info.health,
                       source="docker", network=network)


def _label(prefix: str, labels: Mapping[str, str], key: str, check: Any, default: Any = _REQUIRED) -> Any:
    if key not in labels:
        if default is _REQUIRED:
            raise ValueError(f"label {prefix}.{key} is missing")
        return default
    try:
        return check(labels[key])
    except ValueError as e:
        raise ValueError(f"label {prefix}.{key}: {e}") from None


def _word(value: str) -> str:
    return value if value in ("starting", "unhealthy", "healthy") else grammar._show(value)
