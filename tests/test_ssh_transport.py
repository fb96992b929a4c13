"""lbgen.ssh_transport without sshd: a stand-in `ssh` on PATH that answers the Docker API on its stdin/stdout
(as `docker system dial-stdio` relays it) or fails as ssh does. The real ssh and sshd: test_ssh_integration."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lbgen.docker_engine import DockerEngine
from lbgen.errors import DockerUnavailable

# Logs its argv, then serves HTTP/1.1 keep-alive on stdin/stdout: /version, /_ping, /containers/json.
FAKE_DIAL = r'''
import json, os, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
rin, rout = sys.stdin.buffer, sys.stdout.buffer
while True:
    line = rin.readline()
    if not line:
        break
    method, path, _ = line.decode().split(" ", 2)
    length = 0
    while True:
        header = rin.readline().decode()
        if header in ("\r\n", "\n", ""):
            break
        if header.lower().startswith("content-length:"):
            length = int(header.split(":", 1)[1])
    rin.read(length)
    path = path.split("?")[0]
    body = {"/version": {"ApiVersion": "1.41", "Version": "20.10"}, "/_ping": "OK"}.get(
        path.split("/v1.41", 1)[-1], [])
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    rout.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    rout.flush()
'''


def _fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "dial.py").write_text(script)
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'dial.py'} \"$@\"\n")
    ssh.chmod(0o755)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return log


def test_one_ssh_process_carries_many_api_calls_in_batch_mode(tmp_path, monkeypatch):
    log = _fake_ssh(tmp_path, monkeypatch, FAKE_DIAL)
    engine = DockerEngine(base_url="ssh://deploy@prod.example:2222")
    engine.ping()
    for _ in range(5):
        assert engine.list_containers("lbgen.service") == []
    engine.client.close()
    calls = log.read_text().splitlines()
    assert calls == ['["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-l", "deploy", "-p", "2222", "--", '
                     '"prod.example", "docker system dial-stdio"]']


@pytest.mark.parametrize("stderr, code, expected", [
    ("deploy@prod.example: Permission denied (publickey).", 255,
     "ssh authentication to prod.example failed (key or agent not accepted): deploy@prod.example: Permission denied"),
    ("Host key verification failed.", 255,
     "ssh host key of prod.example is unknown or changed (add it to known_hosts: ssh-keyscan -p 2222 prod.example)"),
    ("failed to open the raw stream connection: dial unix /var/run/docker.sock: connect: connection refused", 1,
     "ssh to prod.example works but its Docker daemon does not answer"),
    ("bash: line 1: docker: command not found", 127, "no docker command on prod.example"),
])
def test_what_ssh_said_becomes_the_one_line_reason(tmp_path, monkeypatch, stderr, code, expected):
    _fake_ssh(tmp_path, monkeypatch, f"import sys\nsys.stderr.write({stderr + chr(10)!r})\nsys.exit({code})\n")
    with pytest.raises(DockerUnavailable) as caught:
        DockerEngine(base_url="ssh://deploy@prod.example:2222")
    message = str(caught.value)
    assert message.startswith("cannot reach the Docker daemon at ssh://deploy@prod.example:2222: "), message
    assert expected in message and "\n" not in message, message


def test_no_ssh_client_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh there
    with pytest.raises(DockerUnavailable, match=r"no ssh client here \(install openssh-client\)"):
        DockerEngine(base_url="ssh://deploy@prod.example")
