"""Beyond one bridge network, on the FakeEngine: `network:` as a list (the seed's per-env networks), Swarm
services' tasks as backends, a proxy that is a Swarm service, and --stop-old scaling services to 0.
The same paths on a real single-node Swarm: tests/test_swarm_integration.py."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fakeproxy import FakeProxy
from fakes import FakeEngine
from lbgen.app import Lbgen
from lbgen.cli import cli
from lbgen.config import parse_config
from lbgen.errors import ConfigError, ContainerNotFound, HealthGateFailed
from lbgen.model import Outcome
from lbgen.proxies.driver import Proxy
from lbgen.sources import Networks
from lbgen.sources.docker import DockerSource
from lbgen.sources.swarm import SwarmSource

WEB = {"lbgen.service": "web", "lbgen.port": "8080"}


def config(network: str = "lbnet", container: str = "proxy"):
    return parse_config(f"network: {network}\nproxy: {{kind: nginx, container: {container}}}\nservices: {{web: {{}}}}\n")


# --- network: one name or a list ----------------------------------------------------------------------

def test_network_takes_one_name_or_a_list():
    assert config().networks == ("lbnet",)
    two = config("[blue-env, green-env]")
    assert two.networks == ("blue-env", "green-env") and two.network == "blue-env"


@pytest.mark.parametrize("value, message", [
    ("[]", "network: expected a Docker network name or a non-empty list of them, got an empty list"),
    ("[a, a]", "network: item 1: network a is listed twice"),
    ("[a, 'b c']", "network: item 1: expected a Docker network name or id, got 'b c'"),
])
def test_a_bad_network_list_is_a_config_error(value, message):
    with pytest.raises(ConfigError) as e:
        config(value)
    assert str(e.value) == f"lbgen.yaml:1: {message}"


def seed_networks() -> FakeEngine:
    """The seed's blue-green pattern: blue on blue-env, green on green-env, the proxy on both plus infrastructure."""
    engine = FakeEngine()
    engine.add_proxy("proxy", networks={"blue-env": "10.1.0.2", "green-env": "10.2.0.2", "infrastructure": "10.9.0.2"})
    engine.add_backend("web-blue-1", "web", "blue", networks={"blue-env": "10.1.0.11"})
    engine.add_backend("web-green-1", "web", "green", networks={"green-env": "10.2.0.11"})
    engine.add_backend("web-both", "web", None, networks={"green-env": "10.2.0.12", "blue-env": "10.1.0.12"})
    engine.add_backend("web-other", "web", "blue", networks={"elsewhere": "10.3.0.11"})
    engine.add_backend("web-infra", "web", "blue", networks={"infrastructure": "10.9.0.11"})
    return engine


def test_per_env_networks_route_each_backend_on_the_first_network_it_shares_with_the_proxy():
    engine = seed_networks()
    proxy = Proxy(engine, config().proxy, ("blue-env", "green-env"))
    inventory = DockerSource(engine, Networks(("blue-env", "green-env"), proxy.info)).discover()
    assert [(b.name, b.network, b.address) for b in inventory.backends] == [
        ("web-both", "blue-env", "10.1.0.12"),   # on both: the first listed wins
        ("web-blue-1", "blue-env", "10.1.0.11"),
        ("web-green-1", "green-env", "10.2.0.11"),
    ]
    assert sorted(map(str, inventory.skipped)) == [
        "skipped container web-infra: on none of the networks it could share with the proxy (blue-env, green-env)",
        "skipped container web-other: on none of the networks it could share with the proxy (blue-env, green-env)",
    ]
    assert proxy.address() == "10.1.0.2"


def test_a_listed_network_the_proxy_is_not_on_routes_nothing():
    engine = seed_networks()
    engine.update("proxy", networks={"green-env": "10.2.0.2"}, network_ids={"green-env": "g"})
    proxy = Proxy(engine, config().proxy, ("blue-env", "green-env"))
    inventory = DockerSource(engine, Networks(("blue-env", "green-env"), proxy.info)).discover()
    assert [(b.name, b.network) for b in inventory.backends] == [("web-both", "green-env"), ("web-green-1", "green-env")]
    assert "skipped container web-blue-1: on none of the networks it could share with the proxy (green-env)" in map(
        str, inventory.skipped)
    assert proxy.address() == "10.2.0.2"
    engine.update("proxy", networks={}, network_ids={})
    with pytest.raises(ContainerNotFound, match="attached to none of the networks blue-env, green-env"):
        Proxy(engine, config().proxy, ("blue-env", "green-env")).address()


def test_discover_says_which_network_each_backend_was_found_on(monkeypatch, tmp_path):
    engine = seed_networks()
    (tmp_path / "lbgen.yaml").write_text("network: [blue-env, green-env]\nproxy: {kind: nginx, container: proxy}\n"
                                         "services: {web: {}}\n")
    monkeypatch.setattr("lbgen.cli._app", lambda ctx: Lbgen(parse_config((tmp_path / "lbgen.yaml").read_text()),
                                                             engine, log=lambda e: None))
    text = CliRunner().invoke(cli, ["discover"]).output
    assert text.splitlines()[1] == "web\tblue\tweb-blue-1\t10.1.0.11:8080\tweight=1\tnetwork=blue-env"
    data = json.loads(CliRunner().invoke(cli, ["discover", "--json"]).output)
    assert [(d["name"], d["network"]) for d in data] == [
        ("web-both", "blue-env"), ("web-blue-1", "blue-env"), ("web-green-1", "green-env")]
    assert "swarm_service" not in data[0] and "node" not in data[0]


# --- Swarm tasks ----------------------------------------------------------------------------------------

def swarm_source(engine: FakeEngine, network: str = "ov") -> SwarmSource:
    return SwarmSource(engine, Networks((network,)))


def test_tasks_of_labelled_services_are_backends_at_their_own_addresses():
    engine = FakeEngine()
    blue = engine.add_service("web-blue", labels={**WEB, "lbgen.env": "blue"}, replicas=2)
    green = engine.add_service("web-green", container_labels={**WEB, "lbgen.env": "green"})
    engine.add_service("unrelated")
    t1 = engine.add_task(blue, 1, network="ov", address="10.0.1.5")
    t2 = engine.add_task(blue, 2, network="ov", address="10.0.1.6", node="node-2", container=False)
    t3 = engine.add_task(green, 1, network="ov", address="10.0.1.7")
    inventory = swarm_source(engine).discover()
    assert [(b.name, b.env, b.address, b.port, b.network, b.swarm_service, b.node, b.source)
            for b in inventory.backends] == [
        (f"web-blue.1.{t1.id}", "blue", "10.0.1.5", 8080, "ov", "web-blue", "node-1", "swarm"),
        (f"web-blue.2.{t2.id}", "blue", "10.0.1.6", 8080, "ov", "web-blue", "node-2", "swarm"),
        (f"web-green.1.{t3.id}", "green", "10.0.1.7", 8080, "ov", "web-green", "node-1", "swarm"),
    ]
    assert inventory.backends[0].id == t1.container_id and inventory.backends[1].id == t2.id
    assert inventory.backends[0].to_dict()["swarm_service"] == "web-blue"
    assert inventory.skipped == ()


def test_container_labels_win_over_service_labels():
    engine = FakeEngine()
    svc = engine.add_service("web-x", labels={**WEB, "lbgen.env": "blue", "lbgen.weight": "2"},
                             container_labels={"lbgen.env": "green"})
    engine.add_task(svc, 1, network="ov")
    [b] = swarm_source(engine).discover().backends
    assert (b.env, b.weight) == ("green", 2)


def test_only_tasks_swarm_wants_running_are_routed():
    engine = FakeEngine()
    svc = engine.add_service("web-blue", labels=WEB, healthcheck=True)
    engine.add_task(svc, 1, network="ov", address="10.0.1.1")
    engine.add_task(svc, 2, network="ov", address="10.0.1.2", desired_state="shutdown")  # being stopped
    engine.add_task(svc, 3, network="ov", address="10.0.1.3", state="starting")  # healthcheck not passed yet
    engine.add_task(svc, 4, network="ov", address="10.0.1.4", state="shutdown", desired_state="shutdown")  # history
    engine.add_task(svc, 5, network="ov", address="10.0.1.5", state="failed", desired_state="shutdown")
    inventory = swarm_source(engine).discover()
    assert [(b.address, b.docker_health) for b in inventory.backends] == [("10.0.1.1", "healthy"),
                                                                         ("10.0.1.3", "starting")]
    assert inventory.skipped == ()


def test_a_task_that_cannot_be_routed_is_skipped_with_the_reason():
    engine = FakeEngine()
    noport = engine.add_service("noport", labels={"lbgen.service": "web"})
    badlabel = engine.add_service("bad", labels={**WEB, "lbgen.weight": "heavy"})
    offnet = engine.add_service("offnet", labels=WEB)
    a = engine.add_task(noport, 1, network="ov")
    b = engine.add_task(badlabel, 1, network="ov")
    c = engine.add_task(offnet, 1, network="other")
    assert sorted(map(str, swarm_source(engine).discover().skipped)) == [
        f"skipped task bad.1.{b.id}: label lbgen.weight: 'heavy' is not a weight (expected an integer 1-256)",
        f"skipped task noport.1.{a.id}: no lbgen.port label (a Swarm service's image ports are not known to the "
        f"manager); set lbgen.port",
        f"skipped task offnet.1.{c.id}: not attached to network ov (the proxy could not reach it)",
    ]


def swarm_proxy(kind: str = "nginx") -> FakeProxy:
    """A FakeProxy on overlay `lbnet` with web-blue (2 tasks) and web-green (2 tasks) as Swarm services."""
    fp = FakeProxy(kind)
    for env in ("blue", "green"):
        svc = fp.engine.add_service(f"web-{env}", labels={**WEB, "lbgen.env": env}, replicas=2)
        for slot in (1, 2):
            task = fp.engine.add_task(svc, slot, network="lbnet", node=f"node-{slot}", container=slot == 1)
            fp.health[task.networks["lbnet"]] = 200
    return fp


def test_core_discovers_containers_and_tasks_on_a_manager_without_listing_a_task_twice():
    fp = swarm_proxy()
    fp.backend("web-blue-plain", "blue")
    app = Lbgen(fp.config, fp.engine, get=fp.get, log=lambda e: None)
    names = [b.name for b in app.discover().backends]
    assert len(names) == 5 and "web-blue-plain" in names
    assert sum(n.startswith("web-blue.1.") for n in names) == 1  # the local task's container is not counted again


def test_switch_gates_on_every_green_task_and_stop_old_scales_the_blue_service_to_zero():
    fp = swarm_proxy()
    app = Lbgen(fp.config, fp.engine, get=fp.get, log=lambda e: None, sleep=lambda s: None)
    app.core.proxy.verify_timeout = 0.5
    app.apply()
    green_other_node = [a for a, s in fp.health.items()][-1]
    fp.health[green_other_node] = 503  # the green task on node-2
    with pytest.raises(HealthGateFailed, match=r"web-green\.2\.\w+: HTTP 503 on /health"):
        app.switch("green", "web", timeout=0.01, stop_old=True)
    assert fp.engine.scaled == []
    fp.health[green_other_node] = 200
    result = app.switch("green", "web", timeout=5, stop_old=True)
    assert result.outcome is Outcome.SWITCHED
    assert fp.engine.scaled == [("web-blue", 0)] and result.stopped == ["web-blue"]
    assert fp.engine.stopped == []  # tasks are never stopped one by one: Swarm would replace them


def test_proxy_container_may_name_a_swarm_service_with_one_task():
    fp = FakeProxy("nginx", config_text="network: lbnet\nproxy: {kind: nginx, container: lb}\n"
                                         "services: {web: {default_env: blue}}\n")
    fp.backend("web-blue-1", "blue")
    lb = fp.engine.add_service("lb")
    fp.engine.add_task(lb, 1, network="lbnet", container=fp.info.id)
    fp.engine.add_task(lb, 2, network="lbnet", state="shutdown", desired_state="shutdown", container=False)
    app = Lbgen(fp.config, fp.engine, get=fp.get, log=lambda e: None)
    app.core.proxy.verify_timeout = 0.5
    assert app.apply().changed and fp.serving is not None
    assert app.core.proxy.key() == lb.id
    # The record and the lock are keyed by the configured name, which outlives the task's container; an
    # older lbgen's state.json is looked for in the task's container.
    assert app.core.store.holder.name == "lbgen-state-lb" and app.core.lock("t").name == "lbgen-lock-lb"
    assert app.core.store.legacy_container() == fp.info.id


def test_a_proxy_service_without_exactly_one_running_task_is_refused():
    engine = FakeEngine()
    lb = engine.add_service("lb", replicas=2)
    engine.add_task(lb, 1)
    engine.add_task(lb, 2)
    with pytest.raises(ContainerNotFound, match=r"Swarm service lb has 2 running tasks; .*scale lb=1"):
        Proxy(engine, config(container="lb").proxy, "lbnet").info()
    with pytest.raises(ContainerNotFound, match="container nothere does not exist"):
        Proxy(engine, config(container="nothere").proxy, "lbnet").info()


def test_engines_without_swarm_are_asked_nothing_about_it():
    fp = FakeProxy("nginx")
    fp.backend("web-blue-1", "blue")
    Lbgen(fp.config, fp.engine, get=fp.get, log=lambda e: None).discover()
    assert [c[0] for c in fp.engine.calls] == ["swarm_manager", "list_containers"]


# --- watch follows Swarm: service events and task containers' events ------------------------------------

def test_service_events_and_task_container_events_reach_watch():
    from lbgen.docker_convert import event_from_message
    from lbgen.engine import EngineEvent

    update = {"Type": "service", "Action": "update", "Actor": {"ID": "svc1", "Attributes": {"name": "web-blue"}},
              "timeNano": 2_000_000_000}
    assert event_from_message(update, "lbgen.service") == EngineEvent(
        action="service-update", container_id="svc1", container_name="web-blue", labels={"lbgen.service": ""},
        time=2.0)
    # a task's container of a service labelled with --label (its container has no lbgen labels): counted
    kill = {"Type": "container", "Action": "kill", "Actor": {"ID": "c1", "Attributes": {
        "name": "web-blue.1.x", "com.docker.swarm.task.id": "x", "signal": "15"}}}
    event = event_from_message(kill, "lbgen.service")
    assert event is not None and (event.action, event.signal) == ("kill", "15")
    # containers' create/update (asked for only because services use those names) and others' events: not
    assert event_from_message({**kill, "Action": "create"}, "lbgen.service") is None
    assert event_from_message({"Type": "container", "Action": "start", "Actor": {"ID": "c2", "Attributes": {}}},
                              "lbgen.service") is None
