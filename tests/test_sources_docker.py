"""Docker discovery: labels -> Backends, or Skipped with a reason (on FakeEngine)."""
from __future__ import annotations

import pytest
from fakes import FakeEngine, fake_id

from lbgen.errors import DockerUnavailable
from lbgen.model import Backend, Inventory, Skipped
from lbgen.sources.docker import DockerSource

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
        Backend("api", None, "api-1", fake_id("api-1"), "192.0.2.31", 8080, 1, True, network=NET),
        Backend("web", "blue", "web-blue-1", fake_id("web-blue-1"), "192.0.2.11", 9000, network=NET),
        Backend("web", "blue", "web-blue-2", fake_id("web-blue-2"), "192.0.2.12", 8080, weight=3, network=NET),
        Backend("web", "green", "web-green-1", fake_id("web-green-1"), "192.0.2.21", 8080, network=NET),
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
