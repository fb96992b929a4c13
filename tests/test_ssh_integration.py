"""DOCKER_HOST=ssh://: lbgen (a subprocess, as a pipeline runs it) reaches this machine's engine through an sshd
container of the test image that runs the docker CLI on the mounted engine socket, with a key pair, host
key and known_hosts the test makes. The key is offered by an ssh-agent the test starts, as a runner's is.

ssh reads ~/.ssh from the passwd entry, not $HOME, so the test never touches the machine's ~/.ssh: an
`ssh` wrapper first on PATH adds `-F <the test's config>` (what a user's ~/.ssh/config would say)."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from scenario import Scenario

SSH = shutil.which("ssh")
DOCKER_CLI = shutil.which("docker")
pytestmark = pytest.mark.skipif(not (SSH and shutil.which("ssh-keygen") and shutil.which("ssh-agent")),
                                reason="needs openssh-client (.ci/run installs it)")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lbgen-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in sorted({str(Path(name).parent) for name in files}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Remote:
    """The sshd containers (a good one, one whose engine socket is missing, one without the docker CLI),
    the keys, and one ssh config per way of connecting."""

    def __init__(self, lab: Any, home: Path) -> None:
        self.lab, self.home = lab, home
        self.host_key = _keygen(home / "host_key")
        self.other_host_key = _keygen(home / "other_host_key")
        _keygen(home / "id")
        _keygen(home / "wrong_id")
        net, _ = lab.network("ssh")
        socket_path = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
        cli = os.path.realpath(DOCKER_CLI or "")
        self.ports = {
            "good": self._sshd(net, {socket_path: "/var/run/docker.sock:rw", cli: "/usr/local/bin/docker:ro"}),
            "nodaemon": self._sshd(net, {cli: "/usr/local/bin/docker:ro"}),
            "nocli": self._sshd(net, {socket_path: "/var/run/docker.sock:rw"}),
        }
        self.agent_socket = home / "agent.sock"
        self.agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(self.agent_socket)],
                                      stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        lab.wait_for(self.agent_socket.exists, timeout=10, what="ssh-agent's socket")
        subprocess.run(["ssh-add", "-q", str(home / "id")], check=True, stdin=subprocess.DEVNULL,
                       env={**os.environ, "SSH_AUTH_SOCK": str(self.agent_socket)}, capture_output=True)

    def _sshd(self, net: str, binds: dict[str, str]) -> int:
        container = self.lab.container(net, command=["/usr/sbin/sshd", "-D", "-e", "-h", "/etc/ssh/ssh_host_key"],
                                       binds=binds, publish=[22], start=False)
        container.put_archive("/", _tar({
            "etc/ssh/ssh_host_key": ((self.home / "host_key").read_bytes(), 0o600),
            "root/.ssh/authorized_keys": ((self.home / "id.pub").read_bytes(), 0o600),
        }))
        container.start()
        container.reload()
        port = int(container.ports["22/tcp"][0]["HostPort"])
        self.lab.wait_for(lambda: _banner(port), timeout=10, what=f"sshd in {container.name}")
        return port

    def env(self, sshd: str = "good", key: str = "agent", known: str = "right") -> dict[str, str]:
        """lbgen's environment: DOCKER_HOST to that sshd, and an ssh config offering `key` ("agent": the
        agent's key, "wrong": a file key sshd does not accept), with `known` ("right", "none", "changed")
        as known_hosts."""
        port = self.ports[sshd]
        folder = self.home / f"{sshd}-{key}-{known}"
        folder.mkdir(exist_ok=True)
        entry = {"right": self.host_key, "changed": self.other_host_key, "none": None}[known]
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {entry}\n" if entry else "")
        identity = (f"IdentityFile {self.home / 'id.pub'}\n  IdentityAgent {self.agent_socket}" if key == "agent"
                    else f"IdentityFile {self.home / 'wrong_id'}\n  IdentityAgent none")
        (folder / "config").write_text(
            f"Host *\n  {identity}\n  IdentitiesOnly yes\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
            f"  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  PasswordAuthentication no\n")
        (folder / "bin").mkdir(exist_ok=True)
        wrapper = folder / "bin" / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {folder / "config"} "$@"\n')
        wrapper.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SSH_"))}
        return {**env, "PATH": f"{folder / 'bin'}:{env.get('PATH', '')}", "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}"}

    def close(self) -> None:
        self.agent.terminate()
        self.agent.wait(timeout=10)


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="module")
def remote(docker_lab: Any, tmp_path_factory: Any) -> Iterator[Remote]:
    if not DOCKER_CLI:
        pytest.skip("needs the docker CLI on this machine, to mount into the sshd container")
    lab = docker_lab.scope()
    remote = None
    try:
        remote = Remote(lab, tmp_path_factory.mktemp("ssh"))
        yield remote
    finally:
        if remote is not None:
            remote.close()
        lab.close()


def lbgen(config: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "lbgen", "-c", str(config), *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def test_discover_status_and_a_switch_work_over_ssh_with_the_agents_key(lab, tmp_path, remote):
    s = Scenario(lab, tmp_path, "nginx")
    s.app().apply()
    env = remote.env()
    code, out, err = lbgen(s.config_path, env, "discover")
    assert code == 0, err
    for container in s.backends["blue"] + s.backends["green"]:
        assert container.name in out, out
    code, out, err = lbgen(s.config_path, env, "switch", "--env", "green", "--checks", "engine", "--timeout", "20s")
    assert code == 0, (out, err)
    assert out.startswith("switched service=web from=blue to=green "), out
    assert s.envs_served() == {"green"}
    code, out, err = lbgen(s.config_path, env, "status", "--json")
    assert code == 0, err
    assert '"active_env": "green"' in out, out


@pytest.mark.parametrize("sshd, key, known, cause", [
    ("good", "wrong", "right", "ssh authentication to 127.0.0.1 failed (key or agent not accepted)"),
    ("good", "agent", "none", "ssh host key of 127.0.0.1 is unknown or changed"),
    ("good", "agent", "changed", "ssh host key of 127.0.0.1 is unknown or changed"),
    ("nodaemon", "agent", "right", "ssh to 127.0.0.1 works but its Docker daemon does not answer"),
    ("nocli", "agent", "right", "no docker command on 127.0.0.1"),
])
def test_a_failure_is_one_line_naming_the_host_and_the_cause_exit_4(lab, tmp_path, remote, sshd, key, known, cause):
    s = Scenario(lab, tmp_path, "nginx", blue=1, green=0)
    before = s.live()
    code, out, err = lbgen(s.config_path, remote.env(sshd, key, known), "status")
    assert code == 4, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert f"ssh://root@127.0.0.1:{remote.ports[sshd]}" in err and cause in err, err
    assert s.live() == before


def test_no_sshd_listening_is_exit_4_naming_the_host(remote, tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**remote.env(), "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}"}
    config = tmp_path / "lbgen.yaml"
    config.write_text("network: n\nproxy: {kind: nginx, container: p}\nservices:\n  web: {listen: 80}\n")
    code, out, err = lbgen(config, env, "status")
    assert code == 4, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "ssh to 127.0.0.1 refused (no sshd listening)" in err, err
