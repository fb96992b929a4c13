"""Discovery end to end: labelled containers on a real Docker engine -> the exact Inventory."""
from __future__ import annotations

import pytest

from lbgen.sources.docker import DockerSource
from lbgen.docker_engine import DockerEngine
from lbgen.model import Backend, Inventory, Skipped

pytestmark = pytest.mark.integration


def test_discovery_finds_exactly_the_routable_backends(lab):
    net, _ = lab.network("app")
    elsewhere, _ = lab.network("elsewhere")
    prefix = lab.label_prefix
    engine = DockerEngine()
    blue1 = lab.backend(net, "web", "blue", name="web-blue-1")
    blue2 = lab.backend(net, "web", "blue", name="web-blue-2", labels={f"{prefix}.weight": "3"})
    green = lab.backend(net, "web", "green", name="web-green-1", port=9000, labels={f"{prefix}.port": "9000"})
    shared = lab.backend(net, "api", None, name="api-1", labels={f"{prefix}.backup": "true"})
    unattached = lab.backend(elsewhere, "web", "blue", name="web-unattached")
    stopped = lab.backend(net, "web", "blue", name="web-stopped", env_vars={"DRAIN": "0"})
    stopped.stop(timeout=0)
    never_started = lab.backend(net, "web", "green", name="web-created", start=False)
    checked = lab.backend(net, "web", "green", name="web-checked", healthcheck=["CMD", "test", "-e", "/tmp/ready"])
    typo = lab.backend(net, "web", "green", name="web-typo", labels={f"{prefix}.wieght": "2"})
    bad_port = lab.backend(net, "web", "green", name="web-badport", labels={f"{prefix}.port": "80;"})
    lab.backend(net, "web", "blue", name="web-not-ours", prefix=prefix + "x")
    source = DockerSource(engine, net, prefix)

    inventory = source.discover()

    def backend(container, service, env, port=8080, **kw) -> Backend:
        return Backend(service, env, container.name, container.id, lab.ip(container, net), port, network=net, **kw)

    known = f"{prefix}.service, {prefix}.env, {prefix}.port, {prefix}.weight, {prefix}.backup"
    assert engine.get_container(checked.id).health == "starting"
    expected_skipped = (
        Skipped(bad_port.name, f"label {prefix}.port: '80;' is not a port (expected 1-65535)"),
        Skipped(never_started.name, "not running"),
        Skipped(stopped.name, "not running"),
        Skipped(typo.name, f"unknown label '{prefix}.wieght' (known: {known})"),
        Skipped(unattached.name, f"not attached to network {net} (the proxy could not reach it)"),
    )
    assert inventory == Inventory(
        backends=(
            backend(shared, "api", None, backup=True),
            backend(blue1, "web", "blue"),
            backend(blue2, "web", "blue", weight=3),
            backend(checked, "web", "green", docker_health="starting"),
            backend(green, "web", "green", port=9000),
        ),
        skipped=tuple(sorted(expected_skipped, key=lambda s: s.name)),
    )

    # The HEALTHCHECK passes: the container joins its pool, carrying its Docker health.
    assert checked.exec_run(["touch", "/tmp/ready"]).exit_code == 0
    lab.wait_for(lambda: engine.get_container(checked.id).health == "healthy", timeout=10,
                 what=f"{checked.name} to become healthy")

    inventory = source.discover()

    assert backend(checked, "web", "green", docker_health="healthy") in inventory.backends
    assert [s.name for s in inventory.skipped] == sorted(s.name for s in expected_skipped)


def test_the_network_can_be_named_by_its_id(lab):
    net, _ = lab.network("app")
    blue = lab.backend(net, "web", "blue")
    network_id = lab.client.networks.get(net).id

    for ref in (network_id, network_id[:12]):
        (found,) = DockerSource(DockerEngine(), ref, lab.label_prefix).discover().backends
        assert (found.name, found.address) == (blue.name, lab.ip(blue, net))


def test_a_backend_answers_where_discovery_says_it_is(lab):
    net, _ = lab.network("app")
    lab.backend(net, "web", "blue")
    (found,) = DockerSource(DockerEngine(), net, lab.label_prefix).discover().backends
    assert lab.wait_http(f"http://{found.endpoint}/", timeout=5).startswith("env=blue ")
