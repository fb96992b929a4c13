"""Inventory-file discovery: a YAML or JSON `backends:` list -> Backends; anything invalid is a ConfigError
naming its key path (the file is the user's own input)."""
from __future__ import annotations

import json
import sys
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

from lbgen import grammar
from lbgen.config import _Parser
from lbgen.config_values import kind_of as _kind
from lbgen.yamlfile import load_yaml
from lbgen.errors import ConfigError
from lbgen.model import Backend, Inventory
from lbgen.sources import sort_backends
from lbgen.timings import bulk

FILE_KEYS = ("service", "env", "name", "id", "address", "port", "weight", "backup")
REQUIRED_KEYS = ("service", "name", "address", "port")
_ALLOWED = frozenset(FILE_KEYS)


class FileSource:
    """An inventory file (YAML or JSON): `backends: [{service, env, name, address, port, weight, backup, id}]`.

    `-` reads standard input. Any invalid entry is a ConfigError naming `backends[3].port`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def discover(self) -> Inventory:
        source = "<stdin>" if self.path == "-" else self.path
        return Inventory(tuple(parse_inventory(self._read(), source, as_json=self.path.endswith(".json"))))

    def _read(self) -> str:
        if self.path == "-":
            return sys.stdin.read()
        try:
            return Path(self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no such inventory file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read: {e}") from e


@bulk()
def parse_inventory(text: str, source: str = "inventory", as_json: bool = False) -> list[Backend]:
    """The backends of an inventory document, in the one order every source returns (sort_backends); a
    ConfigError for the first thing wrong in it."""
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
    backends = _columns(items)
    if backends is None:  # something unusual or wrong: entry by entry, naming the first problem
        seen: dict[str, int] = {}
        backends = []
        for i, raw in enumerate(items):
            backend = _careful(parser, raw, f"backends[{i}]", items, i, seen)
            seen[backend.name] = i
            backends.append(backend)
        backends = list(sort_backends(backends))
    return backends


_ABSENT, _MISSING = object(), object()  # no default (the key is required); an `id` an entry does not give


def _columns(items: list[Any]) -> list[Backend] | None:
    """The common case read column by column, each check one C-level pass over every entry (50,000 entries
    are a shared edge's inventory): the Backends in sort_backends' order, or None when any entry is unusual
    (an IPv6 or non-canonical address, a port or boolean given as a string, ...) or wrong. None sends the
    whole list through `_careful`, which gives the same Backends for valid entries and names the first
    problem."""
    if not items:
        return []
    try:
        if not all(issubclass(t, dict) for t in set(map(type, items))):
            return None
        present = set().union(*items)  # every key some entry has
        if not present <= _ALLOWED:
            return None

        def column(key: str, default: Any = _ABSENT) -> list[Any]:
            """Every entry's `key`; a KeyError when a required one (no default) is missing."""
            if key not in present and default is not _ABSENT:
                return [default] * len(items)
            try:
                return list(map(itemgetter(key), items))
            except KeyError:
                if default is _ABSENT:
                    raise
                return list(map(methodcaller("get", key, default), items))

        names, services, addresses, ports = column("name"), column("service"), column("address"), column("port")
        envs, weights, backups = column("env", None), column("weight", 1), column("backup", False)
        ids = names if "id" not in present else [
            name if given is _MISSING else given for given, name in zip(column("id", _MISSING), names)]
        ok = (_all_str(names) and all(map(grammar.CONTAINER_NAME_RE.fullmatch, names))
              and len(set(names)) == len(names)
              and all(type(s) is str and grammar.NAME_RE.fullmatch(s) for s in set(services))
              and all(e is None or (type(e) is str and grammar.NAME_RE.fullmatch(e)) for e in set(envs))
              and _all_str(addresses) and all(map(grammar.CANONICAL_IPV4_RE.fullmatch, addresses))
              and _ints_within(ports, 1, 65535) and _ints_within(weights, 1, 256)
              and set(map(type, backups)) == {bool}
              and (ids is names or (_all_str(ids) and all(map(grammar.CONTAINER_ID_RE.fullmatch, ids)))))
    except (KeyError, TypeError):  # a required key missing; an unhashable value (a list where a name belongs)
        return None
    if not ok:
        return None
    # sort_backends' order, by C-level comparisons of (service, has an env, env, name): names are unique,
    # so its id and port never decide; its key function would cost 50,000 Python calls.
    keys = list(zip(services, [env is not None for env in envs], [env or "" for env in envs], names))
    rows = list(zip(services, envs, names, ids, addresses, ports, weights, backups))
    return Backend.trusted_file_rows(rows[i] for i in sorted(range(len(rows)), key=keys.__getitem__))


def _all_str(values: list[Any]) -> bool:
    return set(map(type, values)) == {str}


def _ints_within(values: list[Any], low: int, high: int) -> bool:
    return set(map(type, values)) == {int} and low <= min(values) and max(values) <= high


def _careful(parser: _Parser, raw: Any, path: str, items: list[Any], i: int, seen: dict[str, int]) -> Backend:
    """One entry checked key by key: a ConfigError for the first thing wrong, with its key path."""
    entry = parser.mapping(raw, path, FILE_KEYS, REQUIRED_KEYS, items, i)
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
