"""DockerEngine: Docker's JSON -> lbgen's types (unit), and every Engine method against the real daemon."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from lbgen.docker_convert import event_from_message, info_from_inspect, info_from_summary
from lbgen.docker_engine import DockerEngine
from lbgen.engine import ContainerInfo, EngineEvent, ExecResult, FileSpec
from lbgen.errors import ContainerNotFound, DockerUnavailable
from lbgen.proxies.scripts import INSTALL_SCRIPT

IMAGE_ID = "sha256:2d4074d660670da0ec88eb987834338a5a39d537df7d694d790a987a80372f16"
CID = "b40d6faa8666a076dc9e66499fc307c5a3b42035e03e50f4cd1444e8a86a49be"
NET_ID = "dab4e3a30164476ea6f80fd46af91f1f4bcb79ace856abc61264ed29d6b38960"


def endpoint(ip: str = "", network_id: str = "", ipv6: str = "") -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": network_id, "EndpointID": "",
            "Gateway": "", "IPAddress": ip, "IPPrefixLen": 24, "IPv6Gateway": "", "GlobalIPv6Address": ipv6,
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}


# Shapes as Docker 20.10 (API 1.41) returns them, trimmed.
SUMMARY = {
    "Id": CID, "Names": ["/web-blue-1"], "Image": "lbgen-test:latest", "ImageID": IMAGE_ID,
    "Command": "nginx -g 'daemon off;'", "Created": 1795831904,
    "Ports": [{"PrivatePort": 8080, "Type": "tcp"}, {"PrivatePort": 9000, "Type": "udp"},
              {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
              {"IP": "::", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"}],
    "Labels": {"lbgen.service": "web"}, "State": "running", "Status": "Up 2 seconds (healthy)",
    "HostConfig": {"NetworkMode": "app"},
    "NetworkSettings": {"Networks": {"app": endpoint("172.30.250.2", NET_ID), "v6only": endpoint("", "f" * 64,
                                                                                               "fd00::5")}},
    "Mounts": [],
}
INSPECT = {
    "Id": CID, "Name": "/web-blue-1", "Path": "nginx", "Args": ["-g", "daemon off;"], "Image": IMAGE_ID,
    "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
              "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}},
    "Config": {"Labels": {"lbgen.service": "web"}, "ExposedPorts": {"8080/tcp": {}, "9000/udp": {}, "80/tcp": {}}},
    "NetworkSettings": {"Networks": {"app": endpoint("172.30.250.2", NET_ID), "v6only": endpoint("", "f" * 64,
                                                                                               "fd00::5")}},
}
EXPECTED = ContainerInfo(
    id=CID, name="web-blue-1", labels={"lbgen.service": "web"}, running=True, health="healthy",
    networks={"app": "172.30.250.2", "v6only": "fd00::5"}, network_ids={"app": NET_ID, "v6only": "f" * 64},
    exposed_ports=(80, 8080), image=IMAGE_ID, command=("nginx", "-g", "daemon off;"),
)


def test_a_container_summary_and_its_inspect_give_the_same_info():
    assert info_from_summary(SUMMARY) == EXPECTED
    assert info_from_inspect(INSPECT) == EXPECTED


@pytest.mark.parametrize("status,health", [
    ("Up 2 seconds (healthy)", "healthy"), ("Up 1 second (health: starting)", "starting"),
    ("Up 5 minutes (unhealthy)", "unhealthy"), ("Up 5 minutes", None), ("Exited (137) 2 seconds ago", None),
    ("Up 5 minutes (Paused)", None),
])
def test_health_from_the_summary_status(status, health):
    assert info_from_summary({**SUMMARY, "Status": status}).health == health


@pytest.mark.parametrize("state,running", [("running", True), ("paused", False), ("restarting", False),
                                           ("exited", False), ("created", False)])
def test_running_from_the_summary_state(state, running):
    assert info_from_summary({**SUMMARY, "State": state}).running is running


@pytest.mark.parametrize("flags,running", [({}, True), ({"Paused": True}, False), ({"Restarting": True}, False),
                                           ({"Running": False}, False)])
def test_running_from_inspect_means_able_to_serve(flags, running):
    data = {**INSPECT, "State": {**INSPECT["State"], **flags}}
    assert info_from_inspect(data).running is running


def test_a_stopped_container_has_no_addresses():
    stopped = {**INSPECT, "State": {"Running": False}, "NetworkSettings": {"Networks": {"app": endpoint()}}}
    info = info_from_inspect(stopped)
    assert (info.networks, info.network_ids, info.health) == ({}, {}, None)


def test_the_summary_picks_the_containers_own_name_over_link_aliases():
    assert info_from_summary({**SUMMARY, "Names": ["/proxy/web", "/web-blue-1"]}).name == "web-blue-1"


@pytest.mark.parametrize("command,argv", [
    ("/usr/local/bin/lbgen-test-backend", ("/usr/local/bin/lbgen-test-backend",)),
    ("haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg", ("haproxy", "-W", "-db", "-f",
                                                              "/usr/local/etc/haproxy/haproxy.cfg")),
    ("sh -c 'it''s'", ("sh", "-c", "its")),
    ("sh -c 'unbalanced", ("sh", "-c", "'unbalanced")),
    ("", ()),
])
def test_command_from_the_summary(command, argv):
    assert info_from_summary({**SUMMARY, "Command": command}).command == argv


def test_events_are_reduced_to_container_events_carrying_the_label():
    message = {"status": "health_status: healthy", "id": CID, "from": "lbgen-test:latest", "Type": "container",
               "Action": "health_status: healthy",
               "Actor": {"ID": CID, "Attributes": {"image": "lbgen-test:latest", "lbgen.service": "web",
                                                    "name": "web-blue-1", "exitCode": "0"}},
               "scope": "local", "time": 1795832036, "timeNano": 1795832036692487547}
    assert event_from_message(message, "lbgen.service") == EngineEvent(
        "health_status", CID, "web-blue-1", {"lbgen.service": "web"}, 1795832036.6924875)
    assert event_from_message(message, "other.service") is None
    network = {"Type": "network", "Action": "connect", "Actor": {"ID": NET_ID, "Attributes": {"container": CID}}}
    assert event_from_message(network, "lbgen.service") is None


def test_a_kill_event_says_which_signal():
    message = {"Type": "container", "Action": "kill", "time": 1,
               "Actor": {"ID": CID, "Attributes": {"lbgen.service": "web", "name": "web-1", "signal": "1"}}}
    event = event_from_message(message, "lbgen.service")
    assert (event.action, event.signal, event.labels) == ("kill", "1", {"lbgen.service": "web"})


@pytest.mark.parametrize("base_url", ["unix:///nonexistent.sock", "tcp://127.0.0.1:1"])
def test_an_unreachable_daemon_is_docker_unavailable(base_url):
    with pytest.raises(DockerUnavailable) as e:
        DockerEngine(base_url=base_url, timeout=2)
    reason = "No such file or directory" if base_url.startswith("unix") else "Connection refused"
    assert str(e.value) == f"cannot reach the Docker daemon at {base_url}: {reason}"
    assert e.value.__cause__ is not None


def test_daemon_errors_become_lbgen_errors():
    import docker
    import responses

    client = docker.DockerClient(base_url="tcp://127.0.0.1:1", version="1.41")
    engine = DockerEngine(client=client)
    base = "http://127.0.0.1:1/v1.41"
    with responses.RequestsMock() as mock:
        mock.get(f"{base}/containers/nope/json", status=404, json={"message": "No such container: nope"})
        mock.post(f"{base}/containers/web/exec", status=409,
                  json={"message": f"Container {CID} is not running"})
        mock.get(f"{base}/containers/json", status=500, json={"message": "disk full"})
        mock.get(f"{base}/containers/edge/archive", status=500,
                 json={"message": f"RWLayer of container {CID} is unexpectedly nil"})
        with pytest.raises(ContainerNotFound, match="^container nope does not exist$"):
            engine.get_container("nope")
        with pytest.raises(ContainerNotFound, match="^container web is not running$"):
            engine.exec("web", ["true"])
        with pytest.raises(DockerUnavailable, match="^the Docker daemon at tcp://127.0.0.1:1 could not list "
                                                    "containers: disk full$"):
            engine.list_containers("lbgen.service")
        # `docker rm -f` racing a file read: the daemon's words for a container half removed
        with pytest.raises(ContainerNotFound, match="^container edge is being removed$"):
            engine.read_file("edge", "/etc/nginx/conf.d/lbgen.conf")


NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 'this node to swarm and try again.')
WORKER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run "
          "this command on a manager node or promote the current node to a manager.")
NO_LEADER = "The swarm does not have a leader. It's possible that too few managers are online."
LOCKED = "Swarm is encrypted and needs to be unlocked before it can be used."


@pytest.mark.parametrize("status, message, info, manager", [
    (200, None, None, True),  # /swarm answers a manager only
    (503, NOT_A_MANAGER, None, False),  # in no Swarm: /info is not asked
    (503, WORKER, None, False),
    (503, NO_LEADER, {"LocalNodeState": "active", "ControlAvailable": True}, True),  # still a manager
    (503, LOCKED, {"LocalNodeState": "locked", "ControlAvailable": False}, False),
])
def test_the_swarm_state_is_read_from_swarm_and_from_info_when_swarm_cannot_tell(status, message, info, manager):
    import docker
    import responses

    engine = DockerEngine(client=docker.DockerClient(base_url="tcp://127.0.0.1:1", version="1.41"))
    base = "http://127.0.0.1:1/v1.41"
    with responses.RequestsMock() as mock:  # a request nothing is registered for fails the call
        mock.get(f"{base}/swarm", status=status, json={"message": message} if message else {"ID": "x"})
        if info is not None:
            mock.get(f"{base}/info", json={"Swarm": info})
        assert engine.swarm_manager() is manager


@pytest.mark.parametrize("header, asked_version", [("1.43", False), (None, True)])
def test_the_api_version_is_the_daemons_from_its_ping(header, asked_version):
    import responses

    with responses.RequestsMock() as mock:
        mock.get("http://127.0.0.1:1/_ping", body="OK", headers={"Api-Version": header} if header else {})
        if asked_version:  # a daemon (or a proxy in front of it) without the header: /version, as the SDK asks
            mock.get("http://127.0.0.1:1/version", json={"ApiVersion": "1.40", "Version": "19.03.15"})
        engine = DockerEngine(base_url="tcp://127.0.0.1:1")
    assert engine.api.api_version == (header or "1.40")


# --- against the real daemon ---------------------------------------------------------------------

@pytest.fixture
def engine(docker_lab) -> DockerEngine:
    return DockerEngine()


@pytest.mark.integration
def test_the_real_daemon_is_talked_to_in_its_own_api_version_and_is_no_swarm_manager(engine):
    import subprocess

    said = subprocess.run(["docker", "version", "--format", "{{.Server.APIVersion}}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert engine.api.api_version == said
    if engine.api.info()["Swarm"]["LocalNodeState"] == "inactive":  # the Swarm tests' own Swarm is gone by now
        assert engine.swarm_manager() is False


@pytest.mark.integration
def test_list_and_get_agree_with_docker(lab, engine):
    net, subnet = lab.network("eng")
    label = f"{lab.label_prefix}.service"
    blue = lab.backend(net, "web", "blue")
    proxy = lab.nginx_proxy(net, labels={label: "proxy"})
    created = lab.backend(net, "web", "green", start=False)
    lab.backend(net, "web", "other", prefix="nottherightone")

    listed = {c.name: c for c in engine.list_containers(label)}

    assert sorted(listed) == sorted([blue.name, proxy.name, created.name])
    for container in (blue, proxy):
        assert listed[container.name] == engine.get_container(container.name)
    info = listed[blue.name]
    assert info.id == blue.id
    assert info.networks == {net: lab.ip(blue, net)}
    assert info.network_ids == {net: lab.client.networks.get(net).id}
    assert info.networks[net].startswith(subnet.rsplit(".", 1)[0] + ".")
    assert info.exposed_ports == (8080,)
    assert info.running and info.health is None
    assert info.image == blue.image.id
    assert info.labels[f"{lab.label_prefix}.env"] == "blue"
    assert listed[proxy.name].command == ("nginx", "-g", "daemon off;")
    assert listed[created.name].running is False
    assert listed[created.name].networks == {}


@pytest.mark.integration
def test_get_by_name_id_or_id_prefix(lab, engine):
    net, _ = lab.network("eng")
    blue = lab.backend(net, "web", "blue")
    assert engine.get_container(blue.id[:12]).name == blue.name
    assert engine.get_container(blue.id).name == blue.name
    with pytest.raises(ContainerNotFound, match=f"^container {lab.prefix}nope does not exist$"):
        engine.get_container(lab.prefix + "nope")


@pytest.mark.integration
def test_exec_runs_an_argument_list_without_a_shell(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue")
    hostile = "a b; echo INJECTED $HOME `id` 'q' \"dq\"\n}"
    assert engine.exec(box.name, ["printf", "%s", hostile]) == ExecResult(0, hostile)
    result = engine.exec(box.name, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.exit_code == 3
    assert sorted(result.output.split()) == ["err", "out"]
    assert engine.exec(box.name, ["nonexistent-binary"]).exit_code in (126, 127)
    with pytest.raises(ValueError):
        engine.exec(box.name, [])


@pytest.mark.integration
def test_exec_in_a_stopped_or_missing_container(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue", start=False)
    with pytest.raises(ContainerNotFound, match=f"^container {box.name} is not running$"):
        engine.exec(box.name, ["true"])
    with pytest.raises(ContainerNotFound, match="does not exist"):
        engine.exec(lab.prefix + "nope", ["true"])


@pytest.mark.integration
def test_put_file_and_read_file(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue")
    data = bytes(range(256)) * 1000
    engine.put_file(box.name, "/tmp/lbgen-test.bin", data, 0o600)
    assert engine.read_file(box.name, "/tmp/lbgen-test.bin") == data
    assert engine.exec(box.name, ["stat", "-c", "%a %U %G %s", "/tmp/lbgen-test.bin"]).output.strip() == \
        f"600 root root {len(data)}"
    engine.put_file(box.name, "/tmp/lbgen-test.bin", b"shorter\n")  # overwrite, default mode
    assert engine.read_file(box.name, "/tmp/lbgen-test.bin") == b"shorter\n"
    assert engine.exec(box.name, ["stat", "-c", "%a", "/tmp/lbgen-test.bin"]).output.strip() == "644"
    engine.put_file(box.name, "/tmp/empty", b"")
    assert engine.read_file(box.name, "/tmp/empty") == b""

    assert engine.read_file(box.name, "/tmp/nope") is None
    assert engine.read_file(box.name, "/nonexistent/dir/file") is None
    with pytest.raises(FileNotFoundError, match=f"^directory /nonexistent/dir does not exist in container "
                                                f"{box.name}$"):
        engine.put_file(box.name, "/nonexistent/dir/file", b"x")
    with pytest.raises(IsADirectoryError):
        engine.read_file(box.name, "/tmp")
    with pytest.raises(ContainerNotFound):
        engine.read_file(lab.prefix + "nope", "/tmp/x")
    with pytest.raises(ContainerNotFound):
        engine.put_file(lab.prefix + "nope", "/tmp/x", b"x")


@pytest.mark.integration
def test_exec_reads_stdin_in_the_same_round_trip(lab, engine):
    """exec(stdin=...): the bytes reach the command's standard input, which then ends; its output and exit
    code come back as without stdin."""
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue")
    data = bytes(range(256)) * 4096  # 1 MiB, far more than a pipe holds
    result = engine.exec(box.name, ["sh", "-c", "cat > /tmp/in; wc -c < /tmp/in; echo done; echo err >&2; exit 3"],
                         stdin=data)
    # stdout in its order; stderr is a stream of its own, which Docker may deliver before or after it
    # (CI once had "err" first)
    words = result.output.split()
    assert result.exit_code == 3 and "err" in words
    words.remove("err")
    assert words == [str(len(data)), "done"]
    assert engine.read_file(box.name, "/tmp/in") == data
    assert engine.exec(box.name, ["cat"], stdin=b"") == ExecResult(0, "")
    assert engine.exec(box.name, ["true"]) == ExecResult(0, "")  # the client still works after a hijacked one
    # A command that ends without reading its (short) input: its exit code and output.
    assert engine.exec(box.name, ["sh", "-c", "echo early; exit 7"], stdin=b"x" * 1000) == ExecResult(7, "early\n")
    # The install script that cannot write reads the rest of its input before it exits 5: the engine ends
    # the exec at once (a command that leaves a large input unread keeps the stream open for seconds).
    result = engine.exec(box.name, ["sh", "-c", INSTALL_SCRIPT, "sh", "/nonexistent/dir/lbgen.conf", "candidate",
                                    "rename", "--stdin", str(len(data)), "true"], stdin=data)
    assert result.exit_code == 5 and "/nonexistent/dir/lbgen.conf.lbgen-new" in result.output
    with pytest.raises(ContainerNotFound):
        engine.exec(lab.prefix + "nope", ["cat"], stdin=b"x")


@pytest.mark.integration
def test_read_file_follows_symlinks(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue")
    engine.put_file(box.name, "/tmp/real.conf", b"real\n")
    assert engine.exec(box.name, ["ln", "-s", "real.conf", "/tmp/relative.conf"]).exit_code == 0
    assert engine.exec(box.name, ["ln", "-s", "/tmp/relative.conf", "/tmp/chain.conf"]).exit_code == 0
    assert engine.exec(box.name, ["ln", "-s", "/tmp/missing", "/tmp/dangling.conf"]).exit_code == 0
    assert engine.read_file(box.name, "/tmp/relative.conf") == b"real\n"
    assert engine.read_file(box.name, "/tmp/chain.conf") == b"real\n"
    assert engine.read_file(box.name, "/tmp/dangling.conf") is None


@pytest.mark.integration
def test_files_in_a_stopped_container(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue", start=False)
    engine.put_file(box.name, "/tmp/x", b"x")
    assert engine.read_file(box.name, "/tmp/x") == b"x"
    engine.put_files(box.name, "/tmp/st", [FileSpec("y", b"y")])
    assert engine.read_files(box.name, "/tmp/st") == {"y": b"y"}  # the holder's case: a never-started container


@pytest.mark.integration
def test_read_files_reads_a_directory_in_one_archive(lab, engine):
    """The regular files directly in the directory; not a subdirectory's files, not links; nothing for a
    directory that does not exist; ContainerNotFound for a container that does not."""
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue")
    data = bytes(range(256)) * 100
    engine.put_files(box.name, "/tmp/rf", [FileSpec("a", data, 0o600), FileSpec("empty", b"")])
    engine.put_files(box.name, "/tmp/rf/sub", [FileSpec("deeper", b"no")])
    assert engine.exec(box.name, ["ln", "-s", "a", "/tmp/rf/link"]).exit_code == 0
    assert engine.read_files(box.name, "/tmp/rf") == {"a": data, "empty": b""}
    assert engine.read_files(box.name, "/tmp/nope") == {}
    with pytest.raises(ContainerNotFound):
        engine.read_files(lab.prefix + "nope", "/tmp")


@pytest.mark.integration
def test_put_file_into_a_read_only_container_is_a_permission_error(lab, engine):
    box = lab.container(None, "ro", command=["sleep", "60"], read_only=True, start=False)
    with pytest.raises(PermissionError, match=f"^/etc in container {box.name} is read-only "):
        engine.put_file(box.name, "/etc/x", b"x")


@pytest.mark.integration
def test_signal_reaches_pid_1(lab, engine):
    net, _ = lab.network("eng")
    proxy = lab.nginx_proxy(net)
    engine.put_file(proxy.name, "/etc/nginx/conf.d/probe.conf",
                    b"server { listen 8081; location / { return 200 'reloaded\\n'; } }\n")
    engine.signal(proxy.name, "HUP")
    assert lab.wait_http(f"http://{lab.ip(proxy, net)}:8081/", timeout=5) == "reloaded\n"
    assert engine.get_container(proxy.name).running


@pytest.mark.integration
def test_signal_and_stop(lab, engine):
    net, _ = lab.network("eng")
    box = lab.backend(net, "web", "blue", env_vars={"DRAIN": "0"})
    engine.stop_container(box.name, timeout=5)
    assert engine.get_container(box.name).running is False
    engine.stop_container(box.name, timeout=5)  # stopping a stopped container is fine
    with pytest.raises(ContainerNotFound, match=f"^container {box.name} is not running$"):
        engine.signal(box.name, "HUP")
    with pytest.raises(ContainerNotFound, match="does not exist"):
        engine.signal(lab.prefix + "nope", "HUP")
    with pytest.raises(ContainerNotFound, match="does not exist"):
        engine.stop_container(lab.prefix + "nope")


@pytest.mark.integration
def test_create_marker_is_a_test_and_set_on_the_name(lab, engine):
    name = lab.prefix + "lock"
    labels = {**lab.labels, "lbgen.lock": "1", "lbgen.lock.purpose": "test \"quoted\" $x"}

    marker = engine.create_marker(name, lab.image, labels)

    assert marker is not None
    assert engine.create_marker(name, lab.image, labels) is None
    info = engine.get_container(name)
    assert (info.id, info.running, info.labels) == (marker, False, labels)
    assert engine.remove_container(marker) is True
    assert engine.remove_container(marker) is False
    with pytest.raises(ContainerNotFound):
        engine.get_container(name)
    with pytest.raises(DockerUnavailable, match="No such image"):
        engine.create_marker(name, "sha256:" + "0" * 64, labels)


@pytest.mark.integration
def test_events_for_labelled_containers(lab, engine):
    net, _ = lab.network("eng")
    other_net, _ = lab.network("eng2")
    label = f"{lab.label_prefix}.service"
    events: queue.Queue = queue.Queue()

    def follow() -> None:
        for event in engine.events(label, since=time.time()):
            events.put(event)
            if event.action == "destroy":
                return

    threading.Thread(target=follow, daemon=True).start()
    seen: list[EngineEvent] = []

    def wait_for(action: str) -> None:
        while action not in [e.action for e in seen]:
            seen.append(events.get(timeout=10))

    time.sleep(0.2)  # let the stream open
    box = lab.backend(net, "web", "blue", healthcheck=["CMD", "true"], env_vars={"DRAIN": "0"})
    lab.backend(net, "web", "blue", prefix="someoneelse")  # not carrying our label: never seen
    wait_for("health_status")
    lab.api.connect_container_to_network(box.id, other_net)
    wait_for("connect")
    lab.api.remove_container(box.id, force=True)
    wait_for("destroy")

    actions = [e.action for e in seen]
    assert {e.container_id for e in seen} == {box.id}
    assert {e.container_name for e in seen} == {box.name}
    assert all(e.labels[label] == "web" for e in seen)
    assert actions.index("start") < actions.index("health_status") < actions.index("kill") \
        < actions.index("die") < actions.index("destroy")
    assert actions.count("connect") == 2  # its first network (on start), then the second one
    assert not any(a.startswith("exec") for a in actions)
    assert all(abs(e.time - time.time()) < 30 for e in seen)


@pytest.mark.integration
def test_events_replay_from_since(lab, engine):
    net, _ = lab.network("eng")
    label = f"{lab.label_prefix}.service"
    since = time.time() - 1
    box = lab.backend(net, "web", "blue", env_vars={"DRAIN": "0"})
    lab.api.remove_container(box.id, force=True)

    actions = []
    for event in engine.events(label, since=since):
        assert event.container_id == box.id
        actions.append(event.action)
        if event.action == "destroy":
            break
    assert actions == ["start", "kill", "die", "destroy"]  # network events of a gone container are dropped


# --- the fake keeps the real engine's contract ---------------------------------------------------

@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.integration)])
def any_engine(request):
    """(engine, make(name, running) -> container name, image, label prefix, labels every marker must carry)
    for FakeEngine and for DockerEngine."""
    from fakes import FakeEngine

    if request.param == "fake":
        fake = FakeEngine()

        def make_fake(name: str, running: bool) -> str:
            fake.add(name, labels={"contract.service": "x"}, running=running, networks={"n": "192.0.2.1"})
            return name

        return fake, make_fake, "sha256:" + "0" * 64, "contract", {}
    lab = request.getfixturevalue("lab")
    net, _ = lab.network("contract")

    def make_real(name: str, running: bool) -> str:
        return lab.backend(net, "x", None, name=name, start=running, env_vars={"DRAIN": "0"}).name

    return DockerEngine(), make_real, lab.image, lab.label_prefix, lab.labels


def test_engine_contract(any_engine):
    engine, make, image, prefix, cleanup_labels = any_engine
    running = make("c-running", True)
    stopped = make("c-stopped", False)
    missing = running + "-missing"

    assert {(c.name, c.running) for c in engine.list_containers(f"{prefix}.service")} == {
        (running, True), (stopped, False)}
    assert engine.get_container(running).name == running
    with pytest.raises(ContainerNotFound):
        engine.get_container(missing)

    assert engine.exec(running, ["true"]).exit_code == 0
    assert engine.exec(running, ["false"]).exit_code == 1
    for container, error in ((stopped, "is not running"), (missing, "does not exist")):
        with pytest.raises(ContainerNotFound, match=f"^container {container} {error}$"):
            engine.exec(container, ["true"])
        with pytest.raises(ContainerNotFound, match=f"^container {container} {error}$"):
            engine.signal(container, "HUP")

    engine.put_file(running, "/tmp/a", b"one\n", 0o600)
    assert engine.read_file(running, "/tmp/a") == b"one\n"
    assert engine.read_file(running, "/tmp/none") is None
    assert engine.exec(running, ["cp", "-p", "/tmp/a", "/tmp/c"]).exit_code == 0
    assert engine.exec(running, ["mv", "-f", "/tmp/a", "/tmp/b"]).exit_code == 0
    assert (engine.read_file(running, "/tmp/a"), engine.read_file(running, "/tmp/b")) == (None, b"one\n")
    assert engine.exec(running, ["cat", "/tmp/b"]) == ExecResult(0, "one\n")
    assert engine.exec(running, ["mv", "-f", "/tmp/none", "/tmp/x"]).exit_code == 1
    assert engine.exec(running, ["rm", "-f", "/tmp/b", "/tmp/c", "/tmp/none"]).exit_code == 0
    assert engine.read_file(running, "/tmp/b") is None
    assert engine.exec(running, ["mkdir", "-p", "/tmp/lbgen/state"]).exit_code == 0
    # Several files in one archive, in different directories; the directories keep their modes.
    engine.put_file(running, "/tmp/lbgen/state/x.conf", b"x\n", also={"/tmp/y.conf": b"y\n"})
    assert (engine.read_file(running, "/tmp/lbgen/state/x.conf"), engine.read_file(running, "/tmp/y.conf")) == \
        (b"x\n", b"y\n")
    if isinstance(engine, DockerEngine):
        assert engine.exec(running, ["stat", "-c", "%a", "/tmp", "/tmp/lbgen/state"]).output.split() == ["1777", "755"]

    marker_name = running + "-lock"
    labels = {**cleanup_labels, "contract.lock": "1"}
    marker = engine.create_marker(marker_name, image, labels)
    assert marker
    assert engine.create_marker(marker_name, image, {**labels, "contract.lock": "2"}) is None
    info = engine.get_container(marker_name)
    assert (info.id, info.running, info.labels) == (marker, False, labels)
    assert engine.remove_container(marker) is True
    assert engine.remove_container(marker) is False

    engine.stop_container(running, timeout=5)
    after = engine.get_container(running)
    assert (after.running, after.networks) == (False, {})
