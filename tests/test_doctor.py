"""`lbgen doctor` finds the proxy where apply finds it (a Swarm service's one task, the engine
proxy.docker_host names), checks every network lbgen.yaml lists, and reports an engine that does not
answer as its own CRITICAL check. On the FakeEngine; doctor on real set-ups:
tests/test_official_setups_integration.py and tests/test_main_context_integration.py."""
from __future__ import annotations

import dataclasses

import pytest

from fakes import FakeEngine
from lbgen.core import Core
from lbgen.doctor import diagnose
from lbgen.errors import DockerUnavailable
from lbgen.model import CRITICAL, OK, WARNING
from test_main_context import app, by_name, fake


def with_proxy(fp, **changes):
    config = fp.config
    proxy = dataclasses.replace(config.proxy, **changes.pop("proxy", {}))
    fp.config = dataclasses.replace(config, proxy=proxy, **changes)
    return fp


def test_a_proxy_that_is_a_swarm_service_is_followed_to_its_one_running_task():
    fp = with_proxy(fake(), proxy={"container": "lb"})
    lb = fp.engine.add_service("lb")
    fp.engine.add_task(lb, 1, container=fp.info.id)
    report = diagnose(app(fp)[0].core)
    [proxy] = by_name(report, "proxy")
    assert proxy.status == OK and proxy.message == f"{fp.info.name} runs nginx version: nginx/1.27.0"
    assert [c.status for c in by_name(report, "network")] == [OK]
    assert by_name(report, "exec-user")[0].status == OK and by_name(report, "config-path")[0].status == OK

    fp.engine.add_task(lb, 2)
    report = diagnose(app(fp)[0].core)
    assert [(c.name, c.status) for c in report.checks] == [("docker", OK), ("proxy", CRITICAL)]
    [proxy] = by_name(report, "proxy")
    assert proxy.message == "Swarm service lb has 2 running tasks" and proxy.fix == "docker service scale lb=1"


def test_a_name_that_is_neither_a_container_nor_a_service_stops_the_report():
    fp = with_proxy(fake(), proxy={"container": "nothere"})
    fp.engine.add_service("lb")  # a Swarm manager, without a service of that name
    report = diagnose(app(fp)[0].core)
    assert [(c.name, c.status) for c in report.checks] == [("docker", OK), ("proxy", CRITICAL)]
    assert report.checks[1].message == "no container named nothere" and report.exit_code == 2


def test_every_listed_network_is_checked():
    fp = with_proxy(fake(), networks=("lbnet", "green-net"))
    report = diagnose(app(fp)[0].core)
    ok, missing = by_name(report, "network")
    assert ok.status == OK and ok.message == f"proxy is on lbnet at {fp.info.networks['lbnet']}"
    assert missing.status == WARNING and report.exit_code == 1
    assert missing.message == "proxy container proxy is not attached to network green-net: backends found " \
                              "only there are not routed"
    assert missing.fix == "docker network connect green-net proxy"
    assert by_name(report, "status-listener")  # the checks through the network it is on still run

    fp = with_proxy(fake(), network="blue-net", networks=("blue-net", "green-net"))
    report = diagnose(app(fp)[0].core)
    [none] = by_name(report, "network")
    assert none.status == CRITICAL and none.message == "proxy container proxy is not attached to network any " \
                                                       "of blue-net, green-net"
    assert none.fix == "docker network connect blue-net proxy" and by_name(report, "status-listener") == []


def test_a_proxy_service_gets_the_service_command_for_a_missing_network():
    fp = with_proxy(fake(), proxy={"container": "lb"}, networks=("lbnet", "green-net"))
    fp.engine.add_task(fp.engine.add_service("lb"), 1, container=fp.info.id)
    [_, missing] = by_name(diagnose(app(fp)[0].core), "network")
    assert missing.fix == "docker service update --network-add green-net lb"


def test_the_proxy_is_looked_for_on_the_engine_proxy_docker_host_names(monkeypatch):
    fp = with_proxy(fake(), proxy={"docker_host": "ssh://ops@edge"})
    backends = FakeEngine()  # the engine lbgen discovers on: no container named proxy there
    backends.add_backend("web-blue-1", "web", "blue")
    monkeypatch.setattr("lbgen.docker_engine.DockerEngine",
                        lambda base_url: fp.engine if base_url == "ssh://ops@edge" else pytest.fail(base_url))
    report = diagnose(Core(fp.config, backends, get=fp.get))
    assert [(c.name, c.status, c.message) for c in report.checks[:3]] == [
        ("docker", OK, "Docker 0.0-fake answers"), ("proxy-docker", OK, "Docker 0.0-fake answers at ssh://ops@edge"),
        ("proxy", OK, "proxy runs nginx version: nginx/1.27.0")]
    assert by_name(report, "exec-user")[0].status == OK and by_name(report, "config-path")[0].status == OK


def test_an_engine_that_does_not_answer_is_the_docker_check(monkeypatch):
    def down(**kw):
        raise DockerUnavailable("cannot reach the Docker daemon at unix:///var/run/docker.sock: refused")

    monkeypatch.setattr("lbgen.docker_engine.DockerEngine", down)
    fp = fake()
    report = diagnose(Core(fp.config))
    [docker] = report.checks
    assert docker.name == "docker" and docker.status == CRITICAL and report.exit_code == 2
    assert docker.message.startswith("cannot reach the Docker daemon") and \
        docker.fix == "start the Docker daemon, or point DOCKER_HOST at it"


def test_a_stopped_proxy_container_stops_the_report_with_docker_start():
    fp = fake()
    fp.engine.containers[fp.info.id] = dataclasses.replace(fp.info, running=False)
    report = diagnose(app(fp)[0].core)
    assert [(c.name, c.status, c.message, c.fix) for c in report.checks] == [
        ("docker", OK, "Docker 0.0-fake answers", ""),
        ("proxy", CRITICAL, "container proxy is not running", "docker start proxy")]


def test_a_second_report_from_the_same_core_sees_the_container_as_it_is_now():
    fp = with_proxy(fake(), networks=("lbnet", "green-net"))
    lbgen = app(fp)[0]
    lbgen.apply()  # the proxy has seen its container
    assert [c.status for c in by_name(diagnose(lbgen.core), "network")] == [OK, WARNING]
    fp.engine.containers[fp.info.id] = dataclasses.replace(
        fp.info, networks={**fp.info.networks, "green-net": "192.0.2.200"})
    [network] = by_name(diagnose(lbgen.core), "network")
    assert network.status == OK and "green-net at 192.0.2.200" in network.message
