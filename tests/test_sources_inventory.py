"""Inventory files (YAML, JSON, stdin) -> Backends; every invalid value an error naming its key path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbgen.errors import ConfigError
from lbgen.model import Backend, Inventory
from lbgen.sources import sort_backends
from hypothesis import given, settings
from hypothesis import strategies as st

from lbgen.config import _Parser
from lbgen.sources.inventory import FileSource, _careful, _columns, parse_inventory


GOOD_YAML = """\
backends:
  - service: web
    env: blue
    name: web-blue-1
    address: 10.1.0.11
    port: 8080
  - {service: web, env: green, name: web-green-1, address: 10.1.0.21, port: "8080", weight: 5, backup: true,
     id: abc123}
  - service: web
    env: null
    name: web-shared
    address: "fd00::1"
    port: 80
"""


def test_an_inventory_file_in_yaml(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(GOOD_YAML)

    inventory = FileSource(path).discover()

    assert inventory == Inventory(backends=(
        Backend("web", None, "web-shared", "web-shared", "fd00::1", 80, source="file"),
        Backend("web", "blue", "web-blue-1", "web-blue-1", "10.1.0.11", 8080, source="file"),
        Backend("web", "green", "web-green-1", "abc123", "10.1.0.21", 8080, 5, True, source="file"),
    ))


def test_an_inventory_file_in_json(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"backends": [
        {"service": "api", "name": "api-1", "address": "10.1.0.5", "port": 9000, "backup": False},
    ]}))
    assert FileSource(path).discover().backends == (
        Backend("api", None, "api-1", "api-1", "10.1.0.5", 9000, source="file"),
    )


def test_an_inventory_from_stdin(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD_YAML))
    assert len(FileSource("-").discover().backends) == 3


def test_an_empty_backends_list_is_an_empty_inventory():
    assert parse_inventory("backends: []\n") == []


def entry(**overrides) -> str:
    fields = {"service": "web", "env": "blue", "name": "web-1", "address": "10.1.0.1", "port": 8080, **overrides}
    return json.dumps({"backends": [{"service": "web", "name": "web-0", "address": "10.1.0.9", "port": 80},
                                    {k: v for k, v in fields.items() if v is not DROP}]})


DROP = object()


@pytest.mark.parametrize("overrides,message", [
    ({"port": 0}, "backends[1].port: 0 is not a port (expected 1-65535)"),
    ({"port": "80;"}, "backends[1].port: '80;' is not a port (expected 1-65535)"),
    ({"port": True}, "backends[1].port: True is not a port (expected 1-65535)"),
    ({"port": 8080.5}, "backends[1].port: 8080.5 is not a port (expected 1-65535)"),
    ({"weight": 0}, "backends[1].weight: 0 is not a weight (expected an integer 1-256)"),
    ({"weight": 1000}, "backends[1].weight: 1000 is not a weight (expected an integer 1-256)"),
    ({"backup": "yes"}, "backends[1].backup: 'yes' is not a boolean (expected true or false)"),
    ({"service": "Web"}, "backends[1].service: 'Web' is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})"),
    ({"env": "blue\n"}, "backends[1].env: 'blue\\n' is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})"),
    ({"name": "web 1"}, "backends[1].name: 'web 1' is not a valid container name "
                        "(expected [A-Za-z0-9][A-Za-z0-9_.-]*)"),
    ({"name": "web-0"}, "backends[1].name: web-0 is already backends[0]"),
    ({"id": "a;b"}, "backends[1].id: 'a;b' is not a valid container id"),
    ({"service": None}, "backends[1].service: None is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})"),
    ({"env": ["blue"]}, "backends[1].env: ['blue'] is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})"),
    ({"service": {"a": 1}}, "backends[1].service: {'a': 1} is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})"),
    ({"address": "web.example.com"}, "backends[1].address: 'web.example.com' is not an IP address"),
    ({"address": "10.0.0.1}"}, "backends[1].address: '10.0.0.1}' is not an IP address"),
    ({"port": DROP}, "backends[1]: missing required key 'port'"),
    ({"address": DROP}, "backends[1]: missing required key 'address'"),
    ({"wieght": 2}, "backends[1].wieght: unknown key (expected one of: service, env, name, id, address, port, "
                    "weight, backup)"),
])
def test_every_invalid_inventory_value_is_an_error_naming_its_key_path(overrides, message):
    with pytest.raises(ConfigError) as e:
        parse_inventory(entry(**overrides), "inv.json", as_json=True)
    assert str(e.value) == f"inv.json: {message}"


def test_yaml_inventory_errors_carry_the_line():
    text = GOOD_YAML.replace("    port: 80\n", "    port: 80\n    weight: -2\n")
    with pytest.raises(ConfigError) as e:
        parse_inventory(text, "inv.yaml")
    assert str(e.value) == "inv.yaml:14: backends[2].weight: -2 is not a weight (expected an integer 1-256)"


@pytest.mark.parametrize("text,message", [
    ("", "inv.yaml: (top level): expected a mapping, got nothing"),
    ("- a\n", "inv.yaml: (top level): expected a mapping, got a list"),
    ("backend: []\n", "inv.yaml:1: backend: unknown key (expected one of: backends)"),
    ("backends: {}\n", "inv.yaml:1: backends: expected a list of backends, got a mapping"),
    ("backends:\n  - web\n", "inv.yaml:2: backends[0]: expected a mapping, got a string"),
    ("backends: [\n", "inv.yaml:2: invalid YAML: expected the node content, but found '<stream end>'"),
])
def test_malformed_inventories(text, message):
    with pytest.raises(ConfigError) as e:
        parse_inventory(text, "inv.yaml")
    assert str(e.value) == message


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "inv.json"
    path.write_text('{"backends": [\n  {"service": "web",}\n]}')
    with pytest.raises(ConfigError) as e:
        FileSource(path).discover()
    assert str(e.value) == f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes"


def test_a_missing_inventory_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        FileSource(tmp_path / "nope.yaml").discover()
    assert str(e.value) == f"{tmp_path / 'nope.yaml'}: no such inventory file"


def test_inventory_entries_give_what_the_constructor_gives():
    """Valid entries become Backends equal (and hashing equal) to Backends built field by field, defaults
    included, in the one order every source returns."""
    text = json.dumps({"backends": [
        {"service": "web", "env": "blue", "name": "web-1", "address": "10.1.0.1", "port": "8080"},
        {"service": "web", "name": "web-2", "address": "fd00::0:1", "port": 80, "weight": 3, "backup": "true",
         "id": "abc"},
        {"service": "api", "env": None, "name": "api-1", "address": "10.1.0.3", "port": 81, "backup": False}]})
    expected = [
        Backend("api", None, "api-1", "api-1", "10.1.0.3", 81, source="file"),
        Backend("web", None, "web-2", "abc", "fd00::1", 80, weight=3, backup=True, source="file"),
        Backend("web", "blue", "web-1", "web-1", "10.1.0.1", 8080, source="file")]
    got = parse_inventory(text, "inv.json", as_json=True)
    assert got == expected
    assert [hash(b) for b in got] == [hash(b) for b in expected]
    assert [b.to_dict() for b in got] == [b.to_dict() for b in expected]


def careful_reading(items):
    parser, seen, backends = _Parser("inv.json", Path.cwd()), {}, []
    for i, raw in enumerate(items):
        backends.append(_careful(parser, raw, f"backends[{i}]", items, i, seen))
        seen[backends[-1].name] = i
    return list(sort_backends(backends))


NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
OCTET = st.integers(0, 255).map(str)
COLUMN_ENTRY = st.fixed_dictionaries(
    {"service": NAME | st.sampled_from(["web", "api"]), "address": st.tuples(OCTET, OCTET, OCTET, OCTET).map(".".join),
     "port": st.integers(1, 65535)},
    optional={"env": st.none() | NAME | st.sampled_from(["blue", "green"]), "weight": st.integers(1, 256), "backup": st.booleans(),
              "id": st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)})


@settings(max_examples=150, deadline=None)
@given(st.lists(COLUMN_ENTRY, max_size=12))
def test_the_column_reading_gives_what_the_careful_reading_gives(entries):
    """The common case (canonical IPv4, int ports and weights, real booleans, any mix of optional keys)
    is read column by column; the result equals, hashes equal to and is in the same order as the entry-by-entry
    reading."""
    items = [{"name": f"c{i}", **e} for i, e in enumerate(entries)][::-1]  # names out of order too
    columns = _columns(items)
    assert columns is not None
    expected = careful_reading(items)
    assert columns == expected
    assert [hash(b) for b in columns] == [hash(b) for b in expected]
    assert [b.__dict__ for b in columns] == [b.__dict__ for b in expected]


@pytest.mark.parametrize("unusual", [
    {"port": "8080"}, {"address": "fd00::0:1"}, {"backup": "true"}, {"weight": "2"}])
def test_a_valid_but_unusual_entry_is_read_entry_by_entry_to_the_same_backends(unusual):
    items = [{"service": "web", "name": "web-0", "address": "10.1.0.9", "port": 80},
             {"service": "web", "name": "web-1", "address": "10.1.0.1", "port": 8080, **unusual}]
    assert _columns(items) is None
    assert parse_inventory(json.dumps({"backends": items}), "inv.json", as_json=True) == careful_reading(items)


@pytest.mark.parametrize("overrides", [
    {"name": "web-0"}, {"id": None}, {"id": ""}, {"env": ["blue"]}, {"service": None}, {"port": True},
    {"weight": 0}, {"backup": None}, {"address": "10.1.0.256"}, {"wieght": 2}, {"port": DROP}])
def test_the_column_reading_refuses_what_the_grammar_refuses(overrides):
    """Each of these is an error; the column reading hands it to the careful one (which names it)."""
    items = json.loads(entry(**overrides))["backends"]
    assert _columns(items) is None
    with pytest.raises(ConfigError):
        careful_reading(items)
