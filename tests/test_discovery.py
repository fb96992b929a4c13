"""Discovery: Docker labels -> Backends or Skipped with a reason (on FakeEngine); inventory files -> Backends."""
from __future__ import annotations

import json

import pytest
from fakes import FakeEngine, fake_id

from lbgen.discovery import DockerSource, FileSource, MultiSource, parse_inventory
from lbgen.errors import ConfigError, DockerUnavailable
from lbgen.model import Backend, Inventory, Skipped

NET = "lbnet"


def discover(engine: FakeEngine, network: str = NET, prefix: str = "lbgen") -> Inventory:
    return DockerSource(engine, network, prefix).discover()


def only_skip(engine: FakeEngine, **kw) -> str:
    inventory = discover(engine, **kw)
    assert inventory.backends == ()
    assert len(inventory.skipped) == 1
    return inventory.skipped[0].reason


def test_labelled_containers_become_backends_in_a_stable_order():
    engine = FakeEngine()
    engine.add_backend("web-green-1", "web", "green", address="192.0.2.21")
    engine.add_backend("web-blue-2", "web", "blue", address="192.0.2.12", weight=3)
    engine.add_backend("web-blue-1", "web", "blue", address="192.0.2.11", port=9000)
    engine.add_backend("api-1", "api", None, address="192.0.2.31", backup=True)
    engine.add("unrelated", networks={NET: "192.0.2.99"})

    inventory = discover(engine)

    assert inventory == Inventory(backends=(
        Backend("api", None, "api-1", fake_id("api-1"), "192.0.2.31", 8080, 1, True),
        Backend("web", "blue", "web-blue-1", fake_id("web-blue-1"), "192.0.2.11", 9000),
        Backend("web", "blue", "web-blue-2", fake_id("web-blue-2"), "192.0.2.12", 8080, weight=3),
        Backend("web", "green", "web-green-1", fake_id("web-green-1"), "192.0.2.21", 8080),
    ))
    assert engine.calls == [("list_containers", "lbgen.service")]


def test_a_custom_label_prefix():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", "blue", prefix="acme.lb", address="192.0.2.5")
    engine.add_backend("web-2", "web", "blue", address="192.0.2.6")  # lbgen.* labels: not ours here

    inventory = discover(engine, prefix="acme.lb")

    assert [b.name for b in inventory.backends] == ["web-1"]
    assert engine.calls == [("list_containers", "acme.lb.service")]


# --- port ----------------------------------------------------------------------------------------

def test_port_defaults_to_the_only_exposed_tcp_port():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=None, exposed_ports=(3000,))
    assert discover(engine).backends[0].port == 3000


def test_the_port_label_wins_over_exposed_ports():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port="8081", exposed_ports=(80, 443))
    assert discover(engine).backends[0].port == 8081


def test_no_port_label_and_no_exposed_port_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=None)
    assert only_skip(engine) == "no lbgen.port label and no exposed TCP port; set lbgen.port"


def test_no_port_label_and_several_exposed_ports_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=None, exposed_ports=(80, 443))
    assert only_skip(engine) == "no lbgen.port label and several exposed TCP ports (80, 443); set lbgen.port"


@pytest.mark.parametrize("value,shown", [
    ("0", "0"), ("65536", "65536"), ("-1", "'-1'"), ("99999999999", "'99999999999'"), ("80 ", "'80 '"),
    (" 80", "' 80'"), ("8080;", "'8080;'"), ("0x50", "'0x50'"), ("", "''"), ("８０", "'８０'"),
    ("80\nserver evil 10.0.0.1:80;", "'80\\nserver evil 10.0.0.1:80;'"),
])
def test_bad_port_labels_are_skipped(value, shown):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=value)
    assert only_skip(engine) == f"label lbgen.port: {shown} is not a port (expected 1-65535)"


@pytest.mark.parametrize("value", ["1", "65535", "00080"])
def test_port_extremes(value):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=value)
    assert discover(engine).backends[0].port == int(value)


# --- weight and backup ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,shown", [
    ("0", "0"), ("257", "257"), ("-1", "'-1'"), ("1000", "'1000'"), ("1.5", "'1.5'"), ("", "''"), ("3;", "'3;'"),
    ("ten", "'ten'"),
])
def test_bad_weights_are_skipped(value, shown):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", weight=value)
    assert only_skip(engine) == f"label lbgen.weight: {shown} is not a weight (expected an integer 1-256)"


@pytest.mark.parametrize("value", ["1", "256"])
def test_weight_extremes(value):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", weight=value)
    assert discover(engine).backends[0].weight == int(value)


@pytest.mark.parametrize("value,expected", [("true", True), ("false", False)])
def test_backup_label(value, expected):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", backup=value)
    assert discover(engine).backends[0].backup is expected


@pytest.mark.parametrize("value", ["True", "yes", "1", "on", "TRUE", "", "true "])
def test_backup_takes_only_true_or_false(value):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", backup=value)
    assert only_skip(engine) == f"label lbgen.backup: {value!r} is not a boolean (expected true or false)"


# --- service and env -----------------------------------------------------------------------------

def test_without_an_env_label_a_backend_is_in_every_pool():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", None)
    assert discover(engine).backends[0].env is None


HOSTILE = [
    "web\nserver evil 10.0.0.1:80;",
    'web"; return 200 "pwned',
    "web;",
    "web}",
    "web{",
    "$host",
    "web $remote_addr",
    "Web",
    "-web",
    "w" * 64,
    "w" * 10_000,
    "wéb",
    "web\u202e",
    "",
    " web",
    "web#comment",
    "../web",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_service_labels_are_skipped_with_a_printable_reason(value):
    engine = FakeEngine()
    engine.add_backend("web-1", value, "blue")
    reason = only_skip(engine)
    assert reason.startswith("label lbgen.service: ")
    assert reason.endswith("is not a valid name (expected [a-z0-9][a-z0-9_-]{0,62})")
    assert_printable(reason)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_env_labels_are_skipped_with_a_printable_reason(value):
    engine = FakeEngine()
    engine.add_backend("web-1", "web", value)
    reason = only_skip(engine)
    assert reason.startswith("label lbgen.env: ")
    assert_printable(reason)


def assert_printable(text: str) -> None:
    """One line, short, ASCII-safe: it goes to a terminal or a log line as it is."""
    assert "\n" not in text and "\r" not in text
    assert len(text) < 200
    assert text.isprintable()
    assert "\u202e" not in text


def test_a_long_hostile_value_is_shortened_in_the_reason():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", port="9" * 500)
    reason = only_skip(engine)
    assert reason == f"label lbgen.port: '{'9' * 56}... is not a port (expected 1-65535)"


# --- unknown labels ------------------------------------------------------------------------------

def test_an_unknown_label_skips_the_container_rather_than_routing_it_with_defaults():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", "blue", labels={"lbgen.wieght": "5"})
    assert only_skip(engine) == ("unknown label 'lbgen.wieght' (known: lbgen.service, lbgen.env, lbgen.port, "
                                 "lbgen.weight, lbgen.backup)")


def test_a_hostile_unknown_label_name_is_shown_safely():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", labels={"lbgen.x\nserver evil;": "1"})
    reason = only_skip(engine)
    assert reason.startswith("unknown label 'lbgen.x\\nserver evil;'")
    assert_printable(reason)


def test_labels_of_other_prefixes_are_ignored():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", labels={"lbgenx.foo": "1", "lbgen-test": "abc", "com.example.a": "b",
                                               "lbgen": "yes"})
    assert len(discover(engine).backends) == 1


# --- container state -----------------------------------------------------------------------------

def test_a_stopped_container_is_skipped_as_not_running():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", "blue", running=False, networks={})
    assert discover(engine).skipped == (Skipped("web-1", "not running"),)


def test_a_stopped_container_with_bad_labels_is_only_reported_as_not_running():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", "blue", weight="0", running=False)
    assert only_skip(engine) == "not running"


@pytest.mark.parametrize("health", ["starting", "unhealthy"])
def test_a_container_with_a_healthcheck_is_listed_with_its_docker_health(health):
    """Listed so the switch gate can wait for it; lbgen.routing keeps it out of pools until healthy."""
    engine = FakeEngine()
    engine.add_backend("web-1", "web", "blue", health=health)
    (backend,) = discover(engine).backends
    assert backend.docker_health == health

    engine.update("web-1", health="healthy")
    (backend,) = discover(engine).backends
    assert backend.docker_health == "healthy"


def test_a_container_without_a_healthcheck_has_no_docker_health():
    engine = FakeEngine()
    engine.add_backend("web-1", "web")
    assert discover(engine).backends[0].docker_health is None


def test_an_odd_health_value_is_shown_safely():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", health="weird\nstate")
    assert only_skip(engine) == "docker health is 'weird\\nstate'"


# --- networks ------------------------------------------------------------------------------------

def test_a_container_not_on_the_proxy_network_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", networks={"other": "192.0.2.7"})
    assert only_skip(engine) == "not attached to network lbnet (the proxy could not reach it)"


def test_the_address_is_the_one_on_the_configured_network():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", networks={"other": "192.0.2.7", NET: "192.0.2.8", "zzz": "192.0.2.9"})
    assert discover(engine).backends[0].address == "192.0.2.8"


def test_the_network_may_be_given_by_id_or_id_prefix():
    engine = FakeEngine()
    network_id = "4f2a" + "0" * 60
    engine.add_backend("web-1", "web", networks={"app_default": "192.0.2.8"},
                       network_ids={"app_default": network_id})
    assert discover(engine, network=network_id).backends[0].address == "192.0.2.8"
    assert discover(engine, network=network_id[:12]).backends[0].address == "192.0.2.8"
    assert discover(engine, network=network_id[:4]).backends == ()  # too short to mean an id


def test_attached_without_an_address_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", networks={}, network_ids={NET: "ab" * 32})
    assert only_skip(engine) == "has no IP address on network lbnet"


def test_an_ipv6_address_is_normalised():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", address="2001:DB8:0:0::7")
    (backend,) = discover(engine).backends
    assert backend.address == "2001:db8::7"
    assert backend.endpoint == "[2001:db8::7]:8080"


def test_a_bad_address_from_the_engine_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", address="10.0.0.1;evil")
    assert only_skip(engine) == "'10.0.0.1;evil' is not an IP address"


# --- names and ids from the engine ---------------------------------------------------------------

def test_a_container_name_outside_the_grammar_is_skipped_under_a_safe_name():
    engine = FakeEngine()
    engine.add_backend("web 1\n", "web")
    inventory = discover(engine)
    assert inventory.skipped == (Skipped("'web 1\\n'", "'web 1\\n' is not a valid container name "
                                                       "(expected [A-Za-z0-9][A-Za-z0-9_.-]*)"),)


def test_a_container_id_outside_the_grammar_is_skipped():
    engine = FakeEngine()
    engine.add_backend("web-1", "web", id="abc;def")
    assert only_skip(engine) == "'abc;def' is not a valid container id"


def test_skipped_are_sorted_by_name():
    engine = FakeEngine()
    engine.add_backend("c", "web", running=False)
    engine.add_backend("a", "web", weight="x")
    engine.add_backend("b", "web", health="bogus")
    assert [s.name for s in discover(engine).skipped] == ["a", "b", "c"]


def test_engine_errors_pass_through():
    engine = FakeEngine()
    engine.fail_with = DockerUnavailable("cannot reach the Docker daemon at unix:///x: Connection refused")
    with pytest.raises(DockerUnavailable):
        discover(engine)


# --- inventory files -----------------------------------------------------------------------------

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


# --- several sources -----------------------------------------------------------------------------

def test_multi_source_adds_inventories_in_the_common_order(tmp_path):
    engine = FakeEngine()
    engine.add_backend("web-blue-2", "web", "blue", address="192.0.2.2")
    engine.add_backend("web-old", "web", "blue", running=False)
    path = tmp_path / "inventory.yaml"
    path.write_text("backends:\n  - {service: web, env: blue, name: web-blue-1, address: 10.1.0.1, port: 80}\n")

    inventory = MultiSource([DockerSource(engine, NET), FileSource(path)]).discover()

    assert [(b.name, b.source) for b in inventory.backends] == [("web-blue-1", "file"), ("web-blue-2", "docker")]
    assert inventory.skipped == (Skipped("web-old", "not running"),)
