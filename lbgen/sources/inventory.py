"""Inventory-file discovery: a YAML or JSON `backends:` list -> Backends; anything invalid is a ConfigError
naming its key path (the file is the user's own input)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lbgen import grammar
from lbgen.config import _Parser
from lbgen.config_values import kind_of as _kind
from lbgen.yamlfile import load_yaml
from lbgen.errors import ConfigError
from lbgen.model import Backend, Inventory
from lbgen.sources import sort_backends

FILE_KEYS = ("service", "env", "name", "id", "address", "port", "weight", "backup")


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
    allowed, required = frozenset(FILE_KEYS), frozenset(("service", "name", "address", "port"))
    names_ok: set[str] = set()  # service and env names already checked (1,000 services, 50,000 entries)
    name_ok, ipv4_ok = grammar.CONTAINER_NAME_RE.fullmatch, grammar.CANONICAL_IPV4_RE.fullmatch
    for i, raw in enumerate(items):
        # The common case in one pass (50,000 entries are a shared edge's inventory: the plain type and
        # pattern checks below are the grammar's own, inlined); anything unusual goes through the
        # grammar's checks, and anything wrong through the careful path, which names the key path and
        # line of the first problem.
        try:
            if not (type(raw) is dict and raw.keys() <= allowed and required <= raw.keys()):
                raise ValueError
            name, service, env, address, port = raw["name"], raw["service"], raw.get("env"), raw["address"], raw["port"]
            if type(name) is not str or not name_ok(name) or name in seen:
                raise ValueError
            if service not in names_ok:
                names_ok.add(grammar.name(service))
            if env is not None and env not in names_ok:
                names_ok.add(grammar.name(env))
            if type(address) is not str or not ipv4_ok(address):
                address = grammar.address(address)
            if type(port) is not int or not 0 < port < 65536:
                port = grammar.port(port)
            weight = raw.get("weight", 1)
            if type(weight) is not int or not 0 < weight < 257:
                weight = grammar.weight(weight)
            backend = Backend.trusted(service=service, env=env, name=name,
                                      id=grammar.container_id(raw["id"]) if "id" in raw else name,
                                      address=address, port=port, weight=weight, source="file",
                                      backup=grammar.boolean(raw["backup"]) if "backup" in raw else False)
        except (ValueError, TypeError):  # TypeError: an unhashable env, caught below with its key path
            backend = _careful(parser, raw, f"backends[{i}]", items, i, seen)
        seen[backend.name] = i
        backends.append(backend)
    return backends


def _careful(parser: _Parser, raw: Any, path: str, items: list[Any], i: int, seen: dict[str, int]) -> Backend:
    """One entry checked key by key: a ConfigError for the first thing wrong, with its key path."""
    entry = parser.mapping(raw, path, FILE_KEYS, ("service", "name", "address", "port"), items, i)
    name = parser.field(entry, "name", path, grammar.container_name)
    if name in seen:
        raise parser.fail(f"{path}.name", f"{name} is already backends[{seen[name]}]", entry, "name")
    return Backend(
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
    )


def _optional(check: Any) -> Any:
    def inner(value: Any) -> Any:
        return None if value is None else check(value)
    return inner
