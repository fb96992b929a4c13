"""Discovery sources: Docker labels (through an Engine) or an inventory file -> an Inventory of Backends.

Every value that becomes part of a Backend passes lbgen.grammar here. A container with bad labels is
skipped with a one-line reason; a bad inventory file is an error (it is the user's own input).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Protocol

from lbgen import grammar
from lbgen.config import _kind, _Parser, load_yaml
from lbgen.engine import ContainerInfo, Engine
from lbgen.errors import ConfigError
from lbgen.model import Backend, Inventory, Skipped

LABELS = ("service", "env", "port", "weight", "backup")  # the known `<prefix>.*` labels, in help order
FILE_KEYS = ("service", "env", "name", "id", "address", "port", "weight", "backup")
_REQUIRED = object()


class Source(Protocol):
    def discover(self) -> Inventory:
        """What is there now: the routable backends, and what was skipped and why."""


def sort_backends(backends: Iterable[Backend]) -> tuple[Backend, ...]:
    """The one order every source returns (so rendered configs are byte-stable)."""
    return tuple(sorted(backends, key=lambda b: (b.service, b.env is not None, b.env or "", b.name, b.id, b.port)))


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
            (backends if isinstance(result, Backend) else skipped).append(result)
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


class FileSource:
    """An inventory file (YAML or JSON): `backends: [{service, env, name, address, port, weight, backup, id}]`.

    `-` reads standard input. Any invalid entry is a ConfigError naming `backends[3].port`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def discover(self) -> Inventory:
        source = "<stdin>" if self.path == "-" else self.path
        data = parse_inventory(self._read(), source, as_json=self.path.endswith(".json"))
        return Inventory(sort_backends(data))

    def _read(self) -> str:
        if self.path == "-":
            return sys.stdin.read()
        try:
            return Path(self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no such inventory file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read: {e}") from e


def parse_inventory(text: str, source: str = "inventory", as_json: bool = False) -> list[Backend]:
    """The backends of an inventory document; a ConfigError for the first thing wrong in it."""
    if as_json:
        try:
            data = json.loads(text)
        except ValueError as e:
            line = getattr(e, "lineno", None)
            raise ConfigError(f"{source}{f':{line}' if line else ''}: invalid JSON: "
                              f"{getattr(e, 'msg', e)}") from None
    else:
        data = load_yaml(text, source)
    parser = _Parser(source, Path.cwd())
    top = parser.mapping(data, "", ("backends",), ("backends",))
    items = top["backends"]
    if not isinstance(items, list):
        raise parser.fail("backends", f"expected a list of backends, got {_kind(items)}", top, "backends")
    backends: list[Backend] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        path = f"backends[{i}]"
        entry = parser.mapping(raw, path, FILE_KEYS, ("service", "name", "address", "port"), items, i)
        name = parser.field(entry, "name", path, grammar.container_name)
        if name in seen:
            raise parser.fail(f"{path}.name", f"{name} is already backends[{seen[name]}]", entry, "name")
        seen[name] = i
        backends.append(Backend(
            service=parser.field(entry, "service", path, grammar.name),
            env=parser.field(entry, "env", path, _optional(grammar.name)),
            name=name,
            id=parser.field(entry, "id", path, grammar.container_id, name),
            address=parser.field(entry, "address", path, grammar.address),
            port=parser.field(entry, "port", path, grammar.port),
            weight=parser.field(entry, "weight", path, grammar.weight, 1),
            backup=parser.field(entry, "backup", path, grammar.boolean, False),
            docker_health=None,
            source="file",
        ))
    return backends


class MultiSource:
    """Several sources as one: their inventories added up (e.g. several Docker hosts, or Docker + a file)."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.sources = tuple(sources)

    def discover(self) -> Inventory:
        total = Inventory()
        for source in self.sources:
            total = total + source.discover()
        return Inventory(sort_backends(total.backends), total.skipped)


def _optional(check: Any) -> Any:
    def inner(value: Any) -> Any:
        return None if value is None else check(value)
    return inner


def _word(value: str) -> str:
    return value if value in ("starting", "unhealthy", "healthy") else grammar._show(value)
